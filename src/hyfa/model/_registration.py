"""Checks a MuData of tissues and aligns it by donor name: the first arrow of the data path.

Each tissue (modality) lists its own donors in its own order. Registration looks every donor up
by name in ``mdata.obs_names`` and records, per donor and tissue, the row of the donor's sample in
that tissue (:func:`sample_rows`). The expression itself is never copied into a stacked matrix:
:class:`TissueBlocks` reads each minibatch's samples straight from the tissues' own matrices, so
registering the whole transcriptome costs a donors x tissues integer table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse

from hyfa._access import layer_matrix

from ._validation import _preview, check_boolean_mask, check_donor_names, check_tissue_names

logger = logging.getLogger(__name__)


def _tissue_matrix(mdata: MuData, tissue: str, layer: str | None):
    return layer_matrix(mdata.mod[tissue], layer, f"tissue {tissue!r}")


def resolve_tissues(mdata: MuData, tissues: Sequence[str] | None) -> list[str]:
    """Return the tissues to register, checking that each is a modality with donors.

    Parameters
    ----------
    mdata
        MuData with one modality per tissue.
    tissues
        Tissue names; ``None`` takes every modality in ``mdata.mod`` order.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"HYFA expects a MuData with one modality per tissue, got {type(mdata).__name__}.")
    if isinstance(tissues, str):
        tissues = [tissues]
    tissues = list(mdata.mod) if tissues is None else list(tissues)
    unknown = [t for t in tissues if t not in mdata.mod]
    if unknown:
        raise ValueError(
            f"Unknown tissues {_preview(unknown)}; the MuData has {_preview(list(mdata.mod), 60)}."
        )
    if len(set(tissues)) != len(tissues):
        raise ValueError(
            f"Tissues listed twice: {_preview(pd.Index(tissues)[pd.Index(tissues).duplicated()])}."
        )
    if len(tissues) < 2:
        raise ValueError(f"HYFA needs at least two tissues, got {tissues}.")
    check_tissue_names(tissues)
    for tissue in tissues:
        if mdata.mod[tissue].n_obs == 0:
            raise ValueError(f"Tissue {tissue!r} has no donors.")
    check_donor_names(mdata, tissues)
    return tissues


def resolve_genes(mdata: MuData, tissues: Sequence[str], gene_mask_key: str | None) -> list[str]:
    """Return the genes to model: those of the first tissue, kept where the gene mask holds in every tissue.

    Every tissue must measure the same genes (in any order); ``var[gene_mask_key]`` must be a
    boolean column in every tissue, and a gene is kept only where it is ``True`` in all of them.
    """
    reference = mdata.mod[tissues[0]].var_names
    if reference.has_duplicates:
        raise ValueError(
            f"Tissue {tissues[0]!r} has duplicated gene names: {_preview(reference[reference.duplicated()])}. "
            "Call var_names_make_unique() first."
        )
    keep = np.ones(len(reference), dtype=bool)
    for tissue in tissues:
        var = mdata.mod[tissue].var
        if not var.index.equals(reference) and (
            len(var.index) != len(reference) or set(var.index) != set(reference)
        ):
            missing = reference.difference(var.index)
            extra = var.index.difference(reference)
            raise ValueError(
                f"Genes differ between tissue {tissue!r} and tissue {tissues[0]!r}: "
                f"missing {_preview(missing)}; extra {_preview(extra)}. All tissues must measure the same genes."
            )
        if gene_mask_key is not None:
            if gene_mask_key not in var.columns:
                raise KeyError(f"gene_mask_key {gene_mask_key!r} is not a column of mdata[{tissue!r}].var.")
            mask = check_boolean_mask(var[gene_mask_key], f"mdata[{tissue!r}].var[{gene_mask_key!r}]")
            keep &= pd.Series(mask, index=var.index).reindex(reference).to_numpy()
    genes = list(reference[keep])
    if not genes:
        raise ValueError(f"No gene passes gene_mask_key {gene_mask_key!r} in every tissue.")
    if gene_mask_key is not None:
        logger.info(
            "Using %d of %d genes (var[%r] true in every tissue).", len(genes), len(reference), gene_mask_key
        )
    return genes


#: Rows read at once when scanning a whole tissue (checks, statistics).
_CHUNK_ROWS = 1024


class TissueBlocks:
    """Reads registered expression from each tissue's own matrix, genes in registered order, as float32.

    Parameters
    ----------
    mdata
        MuData with one modality per tissue.
    tissues
        Registered tissues; those absent from ``mdata`` have no samples.
    genes
        Registered genes, in model order.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    """

    def __init__(self, mdata: MuData, tissues: Sequence[str], genes: Sequence[str], layer: str | None):
        self.tissues = list(tissues)
        self.n_genes = len(genes)
        self.layer = layer
        self._adatas, self._matrices, self._gene_index = [], [], []
        for tissue in self.tissues:
            adata = mdata.mod[tissue] if tissue in mdata.mod else None
            self._adatas.append(adata)
            if adata is None:
                self._matrices.append(None)
                self._gene_index.append(None)
                continue
            self._matrices.append(_tissue_matrix(mdata, tissue, layer))
            index = adata.var_names.get_indexer(genes)
            identity = len(index) == adata.n_vars and np.array_equal(index, np.arange(adata.n_vars))
            self._gene_index.append(None if identity else index)

    def values(self, k: int, rows: np.ndarray | slice) -> np.ndarray:
        """Return ``(n_rows, n_genes)`` float32 expression of rows ``rows`` of tissue ``k``."""
        matrix = self._matrices[k]
        if isinstance(rows, np.ndarray) and len(rows) and np.all(np.diff(rows) == 1):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # a contiguous block: a view, not a copy
        block = matrix[rows]
        if self._gene_index[k] is not None:
            block = block[:, self._gene_index[k]]
        block = block.toarray() if sparse.issparse(block) else np.asarray(block)
        try:
            return block.astype(np.float32, copy=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"Tissue {self.tissues[k]!r} ({_where(self.layer)}) must hold numbers, got dtype {block.dtype}: {exc}."
            ) from None

    def chunks(self, k: int):
        """Yield ``(rows, values)`` over tissue ``k`` in blocks of rows (for checks and statistics)."""
        n_obs = self._adatas[k].n_obs
        for start in range(0, n_obs, _CHUNK_ROWS):
            rows = np.arange(start, min(start + _CHUNK_ROWS, n_obs))
            yield rows, self.values(k, rows)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Return the ``(n_donors, n_tissues * n_genes)`` minibatch of donors with sample rows ``rows``.

        ``rows`` is a donors x tissues block of :func:`sample_rows`; block ``k`` of columns holds
        tissue ``k``, zero where the donor has no sample.
        """
        rows = np.asarray(rows).astype(np.int64, copy=False)
        n_genes = self.n_genes
        out = np.zeros((rows.shape[0], len(self.tissues) * n_genes), dtype=np.float32)
        for k in range(len(self.tissues)):
            present = np.flatnonzero(rows[:, k] >= 0)
            if len(present):
                out[present, k * n_genes : (k + 1) * n_genes] = self.values(k, rows[present, k])
        return out

    def present(self) -> list[int]:
        """Return the positions of the registered tissues that the MuData holds."""
        return [k for k, adata in enumerate(self._adatas) if adata is not None]

    def name(self, k: int, row: int) -> str:
        """Return the donor name of row ``row`` of tissue ``k``."""
        return str(self._adatas[k].obs_names[row])


def _where(layer: str | None) -> str:
    return "X" if layer is None else f"layer {layer!r}"


def check_expression(blocks: TissueBlocks, genes: Sequence[str]) -> None:
    """Raise if the registered expression of any tissue holds NaN or infinite values, naming donors and genes."""
    for k in blocks.present():
        if np.issubdtype(getattr(blocks._matrices[k], "dtype", np.float32), np.integer):
            continue
        n_bad, examples = 0, []
        for rows, values in blocks.chunks(k):
            bad = ~np.isfinite(values)
            if bad.any():
                n_bad += int(bad.sum())
                r, c = np.nonzero(bad)
                examples += [
                    f"{blocks.name(k, rows[i])}/{genes[j]}" for i, j in zip(r[:5], c[:5], strict=True)
                ]
        if n_bad:
            raise ValueError(
                f"Tissue {blocks.tissues[k]!r} ({_where(blocks.layer)}) has {n_bad} NaN or infinite values, "
                f"e.g. donor/gene {', '.join(examples[:5])}."
            )


def check_counts(blocks: TissueBlocks, genes: Sequence[str]) -> None:
    """Raise if any tissue's registered expression holds negative, non-integer or non-finite values, naming donors and genes."""
    for k in blocks.present():
        for rows, values in blocks.chunks(k):
            checks = (
                ("NaN or infinite", ~np.isfinite(values)),
                ("negative", values < 0),
                ("non-integer", values != np.round(values)),
            )
            for problem, bad in checks:
                if bad.any():
                    r, c = np.nonzero(bad)
                    examples = ", ".join(
                        f"{blocks.name(k, rows[i])}/{genes[j]} = {values[i, j]:g}"
                        for i, j in zip(r[:5], c[:5], strict=True)
                    )
                    raise ValueError(
                        f"gene_likelihood 'nb'/'zinb' models raw counts, but tissue {blocks.tissues[k]!r} "
                        f"({_where(blocks.layer)}) has {problem} values, e.g. donor/gene {examples}. Register "
                        "the raw counts (layer=...) or use gene_likelihood='normal' for normalized expression."
                    )


def sample_rows(mdata: MuData, tissues: Sequence[str]) -> np.ndarray:
    """Return a donors x tissues int32 table: the row of each donor's sample in each tissue, -1 where absent.

    Rows follow ``mdata.obs_names``; donors are looked up by name.
    """
    table = np.full((mdata.n_obs, len(tissues)), -1, dtype=np.int32)
    for k, tissue in enumerate(tissues):
        if tissue in mdata.mod:
            donors = mdata.obs_names.get_indexer(mdata.mod[tissue].obs_names)
            table[donors, k] = np.arange(len(donors), dtype=np.int32)
    return table


def observed_mask(rows: np.ndarray) -> np.ndarray:
    """Return the donors x tissues float32 observation mask of a :func:`sample_rows` table."""
    return (np.asarray(rows) >= 0).astype(np.float32)
