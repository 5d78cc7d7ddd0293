"""Checks a MuData of tissues and stacks it by donor name: the first arrow of the data path.

Each tissue (modality) lists its own donors in its own order. Stacking looks every donor up by
name in ``mdata.obs_names`` and writes one sparse donors x (tissues * genes) matrix, so absent
donor x tissue pairs cost nothing, plus a donors x tissues observation mask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from mudata import MuData
from scipy import sparse

logger = logging.getLogger(__name__)


def _preview(items: Sequence, n: int = 10) -> str:
    items = list(items)
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _tissue_matrix(mdata: MuData, tissue: str, layer: str | None):
    adata = mdata.mod[tissue]
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in tissue {tissue!r} (layers: {list(adata.layers)}).")
    return adata.layers[layer]


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
    for tissue in tissues:
        adata = mdata.mod[tissue]
        if adata.n_obs == 0:
            raise ValueError(f"Tissue {tissue!r} has no donors.")
        dup = adata.obs_names[adata.obs_names.duplicated()]
        if len(dup):
            raise ValueError(f"Tissue {tissue!r} lists donors more than once: {_preview(dup.unique())}.")
        missing = adata.obs_names.difference(mdata.obs_names)
        if len(missing):
            raise ValueError(
                f"Tissue {tissue!r} has donors missing from mdata.obs_names: {_preview(missing)}. "
                "Call mdata.update() after changing modalities."
            )
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
            mask = var[gene_mask_key]
            if mask.dtype != bool:
                raise ValueError(
                    f"mdata[{tissue!r}].var[{gene_mask_key!r}] must be boolean, got {mask.dtype}."
                )
            keep &= mask.reindex(reference).to_numpy()
    genes = list(reference[keep])
    if not genes:
        raise ValueError(f"No gene passes gene_mask_key {gene_mask_key!r} in every tissue.")
    if gene_mask_key is not None:
        logger.info(
            "Using %d of %d genes (var[%r] true in every tissue).", len(genes), len(reference), gene_mask_key
        )
    return genes


def check_expression(mdata: MuData, tissues: Sequence[str], genes: Sequence[str], layer: str | None) -> None:
    """Raise if the registered expression of any tissue holds NaN or infinite values, naming donors and genes."""
    for tissue in tissues:
        adata = mdata.mod[tissue]
        matrix = _tissue_matrix(mdata, tissue, layer)
        gene_idx = adata.var_names.get_indexer(genes)
        values = matrix[:, gene_idx]
        values = values.toarray() if sparse.issparse(values) else np.asarray(values)
        bad = ~np.isfinite(values.astype(np.float64, copy=False))
        if bad.any():
            rows, cols = np.nonzero(bad)
            pairs = [f"{adata.obs_names[r]}/{genes[c]}" for r, c in zip(rows[:5], cols[:5], strict=True)]
            raise ValueError(
                f"Tissue {tissue!r} ({'X' if layer is None else f'layer {layer!r}'}) has {bad.sum()} NaN or "
                f"infinite values, e.g. donor/gene {', '.join(pairs)}."
            )


def check_counts(mdata: MuData, tissues: Sequence[str], genes: Sequence[str], layer: str | None) -> None:
    """Raise if any tissue's registered expression holds negative or non-integer values, naming donors and genes."""
    where = "X" if layer is None else f"layer {layer!r}"
    for tissue in tissues:
        if tissue not in mdata.mod:
            continue
        adata = mdata.mod[tissue]
        values = _tissue_matrix(mdata, tissue, layer)[:, adata.var_names.get_indexer(genes)]
        values = values.toarray() if sparse.issparse(values) else np.asarray(values)
        values = values.astype(np.float64, copy=False)
        for problem, bad in (("negative", values < 0), ("non-integer", values != np.round(values))):
            if bad.any():
                rows, cols = np.nonzero(bad)
                examples = ", ".join(
                    f"{adata.obs_names[r]}/{genes[c]} = {values[r, c]:g}"
                    for r, c in zip(rows[:5], cols[:5], strict=True)
                )
                raise ValueError(
                    f"gene_likelihood 'nb'/'zinb' models raw counts, but tissue {tissue!r} ({where}) has "
                    f"{bad.sum()} {problem} values, e.g. donor/gene {examples}. Register the raw counts "
                    "(layer=...) or use gene_likelihood='normal' for normalized expression."
                )


def observed_mask(mdata: MuData, tissues: Sequence[str]) -> np.ndarray:
    """Return a donors x tissues float32 matrix, 1 where the donor (by name) has a sample of the tissue."""
    mask = np.zeros((mdata.n_obs, len(tissues)), dtype=np.float32)
    for k, tissue in enumerate(tissues):
        if tissue in mdata.mod:
            mask[mdata.obs_names.get_indexer(mdata.mod[tissue].obs_names), k] = 1.0
    return mask


def stack_tissues(
    mdata: MuData, tissues: Sequence[str], genes: Sequence[str], layer: str | None
) -> sparse.csr_matrix:
    """Return the sparse donors x (tissues * genes) expression matrix, rows aligned to ``mdata.obs_names``.

    Block ``k`` of columns holds tissue ``tissues[k]`` with genes in the order of ``genes``.
    Tissues absent from ``mdata`` leave their block empty. Values are copied once, as float32.
    """
    n_genes = len(genes)
    rows, cols, vals = [], [], []
    for k, tissue in enumerate(tissues):
        if tissue not in mdata.mod:
            continue
        adata = mdata.mod[tissue]
        matrix = _tissue_matrix(mdata, tissue, layer)
        gene_idx = adata.var_names.get_indexer(genes)
        values = matrix[:, gene_idx]
        values = values.toarray() if sparse.issparse(values) else np.asarray(values)
        donor_rows = mdata.obs_names.get_indexer(adata.obs_names)
        rows.append(np.repeat(donor_rows, n_genes))
        cols.append(np.tile(np.arange(n_genes) + k * n_genes, len(donor_rows)))
        vals.append(values.astype(np.float32, copy=False).ravel())
    stacked = sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(mdata.n_obs, len(tissues) * n_genes),
        dtype=np.float32,
    )
    return stacked.tocsr()
