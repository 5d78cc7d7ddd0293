"""Phenotype BED files in tensorQTL's convention, from imputed or completed tissues and a gene-position table.

tensorQTL (Taylor-Weiner et al., *Genome Biology* 2019) reads expression as a (b)gzipped BED file: a header
``#chr start end phenotype_id`` followed by one column per sample, one row per gene, positioned at
the gene's transcription start site (TSS) with ``start == end - 1`` (0-based, half-open), sorted by
chromosome and position. Covariates go in a tab-separated file of covariates x samples.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

#: Chromosomes accepted by default, in output order (with or without the ``chr`` prefix).
_CHROMOSOMES = [str(i) for i in range(1, 23)] + ["X", "Y", "M", "MT"]
_BED_COLUMNS = ["#chr", "start", "end", "phenotype_id"]
_VERSION = re.compile(r"\.\d+$")


def _preview(items, n: int = 8) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def read_gene_positions(gtf: str | PathLike, feature: str = "gene") -> pd.DataFrame:
    """Return gene positions and strand-aware TSS from a GTF file (e.g. GENCODE v26, as GTEx v8 used).

    Parameters
    ----------
    gtf
        GTF file, plain or gzipped. Only lines of type ``feature`` are read.
    feature
        GTF feature type holding one line per gene.

    Returns
    -------
    DataFrame indexed by ``gene_id`` (as in the file, version included) with columns ``chr``,
    ``start``, ``end`` (1-based, inclusive, as in the GTF), ``strand``, ``tss`` (``start`` on the
    ``+`` strand, ``end`` on the ``-`` strand) and ``gene_name``.
    """
    path = Path(gtf)
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    with opener(path, "rt") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 9 or fields[2] != feature:
                continue
            attributes = dict(re.findall(r'(\S+) "([^"]*)"', fields[8]))
            if "gene_id" not in attributes:
                raise ValueError(f"A {feature!r} line of {path} has no gene_id attribute: {line[:120]!r}")
            records.append(
                (
                    attributes["gene_id"],
                    fields[0],
                    int(fields[3]),
                    int(fields[4]),
                    fields[6],
                    attributes.get("gene_name"),
                )
            )
    if not records:
        raise ValueError(f"{path} has no {feature!r} lines.")
    table = pd.DataFrame(records, columns=["gene_id", "chr", "start", "end", "strand", "gene_name"])
    table["tss"] = np.where(table["strand"] == "-", table["end"], table["start"])
    return table.set_index("gene_id")


def _tss_table(gene_positions: pd.DataFrame | str | PathLike) -> pd.DataFrame:
    """Return a table indexed by gene with ``chr`` and 1-based ``tss`` columns."""
    if not isinstance(gene_positions, pd.DataFrame):
        gene_positions = read_gene_positions(gene_positions)
    table = gene_positions.copy()
    if "chr" not in table.columns:
        raise ValueError(f"gene_positions needs a 'chr' column; it has {list(table.columns)}.")
    if "tss" not in table.columns:
        if not {"start", "end", "strand"} <= set(table.columns):
            raise ValueError("gene_positions needs a 'tss' column, or 'start', 'end' and 'strand' columns.")
        bad = ~table["strand"].isin(["+", "-"])
        if bad.any():
            raise ValueError(f"Genes with a strand other than '+'/'-': {_preview(table.index[bad])}.")
        table["tss"] = np.where(table["strand"] == "-", table["end"], table["start"])
    table["chr"] = table["chr"].astype(str)
    return table


def _match_genes(genes: pd.Index, table: pd.DataFrame) -> pd.DataFrame:
    """Return the rows of ``table`` for ``genes``: exact ids first, then ids without a ``.N`` version."""
    index = table.index.astype(str)
    if not index.is_unique:
        raise ValueError(
            f"gene_positions lists genes more than once: {_preview(index[index.duplicated()].unique())}."
        )
    found = index.get_indexer(genes)
    if (found < 0).any():
        unversioned = pd.Index(index.str.replace(_VERSION, "", regex=True))
        if unversioned.is_unique:
            fallback = unversioned.get_indexer(genes.str.replace(_VERSION, "", regex=True))
            found = np.where(found < 0, fallback, found)
    if (found < 0).any():
        raise ValueError(
            f"{int((found < 0).sum())} of {len(genes)} genes have no position in gene_positions: "
            f"{_preview(genes[found < 0])}. Drop them (adata[:, keep]) or add their positions."
        )
    return table.iloc[found].set_index(genes)


def _chromosome_rank(chromosomes: pd.Series, allowed: Sequence[str] | None) -> np.ndarray:
    """Return the sort rank of each chromosome, raising on chromosomes outside ``allowed``."""
    if allowed is None:
        order = {c: k for k, c in enumerate(_CHROMOSOMES)}
        rank = chromosomes.str.replace(r"^chr", "", regex=True).map(order)
    else:
        order = {str(c): k for k, c in enumerate(allowed)}
        rank = chromosomes.map(order)
    unknown = chromosomes[rank.isna()]
    if len(unknown):
        known = _preview(allowed if allowed is not None else ["chr" + c for c in _CHROMOSOMES], 5)
        raise ValueError(
            f"{len(unknown)} genes lie on unknown chromosomes {_preview(unknown.unique())} (genes "
            f"{_preview(unknown.index)}); known chromosomes: {known}."
        )
    return rank.to_numpy(dtype=np.int64)


def phenotype_bed(
    adata: AnnData,
    gene_positions: pd.DataFrame | str | PathLike,
    layer: str | None = None,
    sample_ids: Sequence[str] | None = None,
    chromosomes: Sequence[str] | None = None,
    min_samples: int = 10,
    n_covariates: int = 0,
) -> pd.DataFrame:
    """Return the tensorQTL phenotype table of a donors x genes AnnData, checked and sorted.

    Parameters
    ----------
    adata
        Donors x genes expression of one tissue (e.g. one modality of
        :meth:`hyfa.HYFA.get_completed_cohort`); donors are the samples, named by ``obs_names``.
    gene_positions
        GTF path (see :func:`read_gene_positions`) or a DataFrame indexed by gene id with ``chr``
        and either ``tss`` or ``start``, ``end`` and ``strand`` (1-based, as in a GTF). Gene ids
        match ``var_names`` exactly or, failing that, without their ``.N`` version.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    sample_ids
        The genotype sample IDs (e.g. the columns of tensorQTL's genotype table): every donor must
        be one of them.
    chromosomes
        Chromosome names accepted, in output order (e.g. those of the genotypes); default
        ``chr1``-``chr22``, ``chrX``, ``chrY``, ``chrM`` with or without the ``chr`` prefix.
    min_samples
        Fewest donors accepted; at least ``n_covariates + 3``, the fewest with which tensorQTL's
        regression has a residual degree of freedom (the GTEx pipeline mapped tissues with 70 or more).
    n_covariates
        Covariates that will be regressed out.

    Returns
    -------
    DataFrame with columns ``#chr``, ``start``, ``end``, ``phenotype_id`` and one per donor, one row
    per gene at its TSS (``start = tss - 1``, ``end = tss``), sorted by chromosome and position.
    """
    donors = pd.Index(adata.obs_names.astype(str))
    needed = max(int(min_samples), int(n_covariates) + 3)
    if adata.n_obs < needed:
        raise ValueError(
            f"{adata.n_obs} donors is too few for cis-eQTL mapping with {n_covariates} covariates "
            f"(at least {needed}; min_samples={min_samples})."
        )
    if not donors.is_unique:
        raise ValueError(f"Duplicate donor names: {_preview(donors[donors.duplicated()].unique())}.")
    if sample_ids is not None:
        missing = donors.difference(pd.Index(np.asarray(sample_ids).astype(str)), sort=False)
        if len(missing):
            raise ValueError(
                f"{len(missing)} of {len(donors)} donors are not among the genotype sample IDs: "
                f"{_preview(missing)} (genotype IDs, e.g.: {_preview(list(sample_ids)[:3], 3)})."
            )
    values = adata.X if layer is None else adata.layers[layer]
    values = values.toarray() if sparse.issparse(values) else np.asarray(values)
    finite = np.isfinite(values)
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        examples = _preview(
            [f"{donors[i]}/{adata.var_names[j]}" for i, j in zip(rows[:5], cols[:5], strict=True)]
        )
        raise ValueError(f"{int((~finite).sum())} non-finite expression values (donor/gene: {examples}).")
    positions = _match_genes(pd.Index(adata.var_names.astype(str)), _tss_table(gene_positions))
    rank = _chromosome_rank(positions["chr"], chromosomes)
    tss = positions["tss"].to_numpy(dtype=np.int64)
    order = np.lexsort((tss, rank))
    head = pd.DataFrame(
        {"#chr": positions["chr"].to_numpy(), "start": tss - 1, "end": tss, "phenotype_id": positions.index}
    )
    body = pd.DataFrame(values.T, columns=donors)
    return pd.concat([head, body], axis=1).iloc[order].reset_index(drop=True)


def _covariate_table(adata: AnnData, covariates) -> pd.DataFrame:
    """Return the covariates x donors table from ``obs`` keys or a donors x covariates DataFrame."""
    if isinstance(covariates, pd.DataFrame):
        table = covariates.copy()
        table.index = table.index.astype(str)
        missing = pd.Index(adata.obs_names.astype(str)).difference(table.index, sort=False)
        if len(missing):
            raise ValueError(f"{len(missing)} donors have no covariates: {_preview(missing)}.")
        table = table.loc[adata.obs_names.astype(str)]
    else:
        keys = [covariates] if isinstance(covariates, str) else list(covariates)
        absent = [k for k in keys if k not in adata.obs.columns]
        if absent:
            raise ValueError(f"Covariates {absent} are not columns of adata.obs.")
        table = adata.obs[keys].copy()
        table.index = table.index.astype(str)
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        raise ValueError(f"Covariates must be numeric (one-hot encode categories first): {non_numeric}.")
    if not np.isfinite(table.to_numpy(dtype=np.float64)).all():
        raise ValueError("Covariates hold NaN or infinite values.")
    out = table.T
    out.index.name = "ID"
    return out


def write_phenotype_bed(
    adata: AnnData,
    filename: str | PathLike,
    gene_positions: pd.DataFrame | str | PathLike,
    layer: str | None = None,
    sample_ids: Sequence[str] | None = None,
    covariates: Sequence[str] | pd.DataFrame | None = None,
    covariates_filename: str | PathLike | None = None,
    chromosomes: Sequence[str] | None = None,
    min_samples: int = 10,
    overwrite: bool = False,
) -> pd.DataFrame:
    """Write one tissue's expression as a tensorQTL phenotype BED file (``.bed.gz``) and return its table.

    Every check (gene positions, chromosomes, donor IDs, donor count, finite values, covariates,
    existing files) runs before anything is written; files are written under a temporary name and
    renamed when complete. Read the file with ``tensorqtl.read_phenotype_bed`` or
    :func:`read_phenotype_bed`.

    Parameters
    ----------
    adata, gene_positions, layer, sample_ids, chromosomes, min_samples
        As in :func:`phenotype_bed`.
    filename
        Output file; its name must end in ``.bed.gz``.
    covariates
        ``obs`` columns of ``adata`` or a donors x covariates DataFrame (numeric); written to
        ``covariates_filename`` as tensorQTL's tab-separated covariates x samples table (first
        column ``ID``).
    covariates_filename
        Output file of the covariates (required with ``covariates``).
    overwrite
        Replace existing files; otherwise an existing file is an error.
    """
    path = Path(filename)
    if not path.name.endswith(".bed.gz"):
        raise ValueError(f"filename must end in '.bed.gz', got {path.name!r}.")
    if (covariates is None) != (covariates_filename is None):
        raise ValueError("Pass covariates and covariates_filename together.")
    outputs = [path] + ([Path(covariates_filename)] if covariates_filename is not None else [])
    for out in outputs:
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True to replace it.")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"The folder of {out} does not exist.")
    cov = _covariate_table(adata, covariates) if covariates is not None else None
    n_cov = 0 if cov is None else cov.shape[0]
    bed = phenotype_bed(adata, gene_positions, layer, sample_ids, chromosomes, min_samples, n_cov)
    partial = path.with_name(path.name + ".partial")
    try:
        with gzip.open(partial, "wt") as handle:
            bed.to_csv(handle, sep="\t", index=False, float_format="%.9g")  # float32 values round-trip
        if cov is not None:
            cov_partial = Path(str(covariates_filename) + ".partial")
            cov.to_csv(cov_partial, sep="\t", float_format="%.6g")
            cov_partial.replace(covariates_filename)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return bed


def read_phenotype_bed(filename: str | PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(phenotype_df, phenotype_pos_df)`` of a phenotype BED file, as tensorQTL's ``read_phenotype_bed``.

    ``phenotype_df`` is genes x samples; ``phenotype_pos_df`` has ``chr`` and ``pos`` (the TSS,
    ``end``) per gene.
    """
    table = pd.read_csv(filename, sep="\t", dtype={"#chr": str, "start": np.int64, "end": np.int64})
    table = table.set_index("phenotype_id")
    positions = table[["#chr", "end"]].rename(columns={"#chr": "chr", "end": "pos"})
    return table.drop(columns=["#chr", "start", "end"]), positions


def write_phenotype_beds(
    mdata,
    directory: str | PathLike,
    gene_positions: pd.DataFrame | str | PathLike,
    tissues: Sequence[str] | None = None,
    layer: str | None = None,
    sample_ids: Sequence[str] | None = None,
    chromosomes: Sequence[str] | None = None,
    min_samples: int = 10,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write one phenotype BED file per tissue of a MuData (``{directory}/{tissue}.bed.gz``) and return their paths.

    Every tissue is checked (see :func:`phenotype_bed`) and every output path tested before the
    first file is written, so a bad tissue leaves nothing behind.

    Parameters
    ----------
    mdata
        MuData of tissues, e.g. :meth:`hyfa.HYFA.get_completed_cohort`.
    directory
        Existing output folder.
    gene_positions, layer, sample_ids, chromosomes, min_samples, overwrite
        As in :func:`write_phenotype_bed`.
    tissues
        Tissues to write (default: every modality).
    """
    directory = Path(directory)
    tissues = list(mdata.mod) if tissues is None else list(tissues)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a folder.")
    table = _tss_table(gene_positions)
    paths = {tissue: directory / f"{tissue}.bed.gz" for tissue in tissues}
    for tissue, path in paths.items():
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        try:
            phenotype_bed(mdata.mod[tissue], table, layer, sample_ids, chromosomes, min_samples)
        except ValueError as error:
            raise ValueError(f"Tissue {tissue!r}: {error}") from None
    for tissue, path in paths.items():
        write_phenotype_bed(
            mdata.mod[tissue], path, table, layer, sample_ids, None, None, chromosomes, min_samples, overwrite
        )
    return paths
