"""Reading GTEx portal files into a MuData with one modality (donors x genes) per tissue."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from os import PathLike

import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.utils import make_index_unique
from mudata import MuData

from hyfa._checks import duplicates, preview
from hyfa._utils import as_list as _as_list

from ._annotations import read_sample_attributes, read_subject_phenotypes
from ._gct import iter_gct_counts, read_gct_genes, read_gct_header
from ._mudata import build_mudata
from ._tissue import tissue_id

logger = logging.getLogger(__name__)

#: Attribute columns that describe the tissue rather than the sample; they are not copied to ``.obs``.
_TISSUE_COLUMNS = ("SMTS", "SMTSD")


def donor_id(sample_id: str) -> str:
    """Return the GTEx donor id of a sample id: its first two dash-separated fields.

    Parameters
    ----------
    sample_id
        GTEx sample id, e.g. ``"GTEX-1117F-0226-SM-5GZZ7"`` (donor ``"GTEX-1117F"``).
    """
    parts = sample_id.split("-")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"Sample id {sample_id!r} does not start with a donor id of the form 'GTEX-XXXX'.")
    return f"{parts[0]}-{parts[1]}"


def read_gtex(
    reads_gct: str | PathLike,
    sample_attributes: str | PathLike,
    subject_phenotypes: str | PathLike | None = None,
    tissues: Iterable[str] | None = None,
    drop_tissues: Iterable[str] | None = None,
    min_tissues_per_donor: int = 1,
    donors: Iterable[str] | None = None,
    genes: Iterable[str] | None = None,
    chunk_size: int = 500,
) -> MuData:
    """Read GTEx read counts into a MuData with one modality per tissue and donors as observations.

    Multi-tissue imputation :cite:p:`Vinas2023` treats each tissue as a donors x genes matrix in
    which most donors are missing. This reader builds exactly that from the GTEx portal's files.
    The count table is read in two streaming passes: the first lists the genes (``Name`` and
    ``Description`` only), the second parses the counts of the selected genes in chunks of
    ``chunk_size`` rows straight into the output, skipping the other rows unparsed. A full
    portal-size ``gene_reads`` file (56,200 genes x 17,382 samples) is thus read with memory
    bounded by the output plus one chunk; its dimension line is not trusted. All arguments are
    checked, and every problem found in the annotations or in ``genes`` is raised as a
    :class:`ValueError` naming the offending samples, donors, tissues or genes before any count
    is parsed. Errors in the count table (a truncated or corrupt file, a ragged row, a bad count)
    name the file and line.

    Parameters
    ----------
    reads_gct
        GCT 1.2 file of integer read counts (genes x samples), plain or gzip, e.g.
        ``GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.gct.gz``.
    sample_attributes
        Tab-separated sample annotations (``SampleAttributesDS.txt``) with columns ``SAMPID`` and
        ``SMTSD``; every sample of the GCT file must be listed.
    subject_phenotypes
        Optional tab-separated donor annotations (``SubjectPhenotypesDS.txt``) with columns
        ``SUBJID``, ``SEX`` and ``AGE`` (e.g. ``DTHHRDY`` too); every kept donor must be listed.
    tissues
        Keep only these tissues, given as identifiers (see :func:`~hyfa.data.tissue_id`) or as
        ``SMTSD`` names. ``None`` keeps all.
    drop_tissues
        Drop these tissues (identifiers or ``SMTSD`` names), e.g.
        :data:`~hyfa.data.PAPER_DROPPED_TISSUES`.
    min_tissues_per_donor
        Drop donors with samples in fewer of the kept tissues (the paper uses 2).
    donors
        Keep only these donors. ``None`` keeps all.
    genes
        Keep only these genes, in this order, given as Ensembl ids exactly as in the GCT ``Name``
        column (``.var["gene_ids"]``, e.g. ``"ENSG00000012048.20"``) or as the output's
        ``.var_names`` (``Description`` symbols made unique over the whole file, e.g. ``"BRCA1"``).
        The result equals reading every gene and subsetting, but takes a fraction of the time and
        memory. ``None`` keeps all genes, in file order.
    chunk_size
        Number of GCT rows (genes) parsed at a time.

    Returns
    -------
    MuData with one modality per tissue, named by tissue identifier and sorted. Each modality has

    - ``.obs_names``: the tissue's donors (sorted), with the sample id in ``.obs["sample_id"]``
      and any further sample attribute columns (``SMTS``/``SMTSD`` excepted) alongside;
    - ``.X``: dense ``int32`` raw read counts;
    - ``.var_names``: gene symbols (GCT ``Description``) made unique as by
      :meth:`~anndata.AnnData.var_names_make_unique`, with Ensembl ids (GCT ``Name``) in
      ``.var["gene_ids"]``.

    ``mdata.obs_names`` is the sorted union of the donors; with ``subject_phenotypes``,
    ``mdata.obs`` holds the donor covariates (``AGE`` categorical, ``age`` its midpoint in years,
    ``SEX`` as given, ``sex`` as ``"male"``/``"female"``, and the file's other columns).
    ``mdata.uns["tissue_names"]`` maps each tissue identifier to its ``SMTSD`` name.

    Examples
    --------
    >>> import hyfa
    >>> mdata = hyfa.data.read_gtex(
    ...     "GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.gct.gz",
    ...     "GTEx_Analysis_v8_Annotations_SampleAttributesDS.txt",
    ...     drop_tissues=hyfa.data.PAPER_DROPPED_TISSUES,
    ...     min_tissues_per_donor=2,
    ... )  # doctest: +SKIP
    """
    if not isinstance(min_tissues_per_donor, int | np.integer) or min_tissues_per_donor < 1:
        raise ValueError(f"min_tissues_per_donor must be a positive integer, got {min_tissues_per_donor!r}.")
    if not isinstance(chunk_size, int | np.integer) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    genes = _as_list(genes)
    if genes is not None and not genes:
        raise ValueError("`genes` is empty; pass None to keep every gene.")
    header = read_gct_header(reads_gct)
    samples = _sample_table(
        header.samples, read_sample_attributes(sample_attributes), reads_gct, sample_attributes
    )
    samples = _select_tissues(samples, _as_list(tissues), _as_list(drop_tissues))
    samples = _select_donors(samples, _as_list(donors))
    _check_unique_pairs(samples)
    samples = _drop_sparse_donors(samples, min_tissues_per_donor)
    if samples.empty:
        raise ValueError("No samples left after selecting tissues and donors.")
    donor_obs = _donor_table(samples, subject_phenotypes)

    all_genes = read_gct_genes(reads_gct)
    var = _gene_table(all_genes["gene_ids"].to_numpy(), all_genes["symbols"].to_numpy(), reads_gct)
    rows = np.arange(len(var)) if genes is None else _gene_rows(var, genes, reads_gct)
    var = var.iloc[rows]

    tissue_order = sorted(samples["tissue"].unique())
    samples = samples.sort_values(["tissue", "donor"])
    columns = {t: np.flatnonzero(samples["tissue"].to_numpy() == t) for t in tissue_order}
    blocks = _read_counts(reads_gct, samples.index, rows, len(all_genes), columns, chunk_size)

    mods = {}
    attr_cols = [c for c in samples.columns if c not in ("donor", "tissue", *_TISSUE_COLUMNS)]
    for t in tissue_order:
        part = samples.iloc[columns[t]]
        obs = part[attr_cols].copy()
        obs.insert(0, "sample_id", part.index.to_numpy(dtype=object))
        obs.index = pd.Index(part["donor"].to_numpy(dtype=object))
        for col in obs.columns:
            if isinstance(obs[col].dtype, pd.CategoricalDtype):
                obs[col] = obs[col].cat.remove_unused_categories()
        mods[t] = AnnData(X=blocks.pop(t), obs=obs, var=var.copy())
    names = samples.drop_duplicates("tissue").set_index("tissue")["SMTSD"]
    mdata = build_mudata(mods, donor_obs, uns={"tissue_names": {t: str(names[t]) for t in tissue_order}})
    logger.info(
        "Read %d samples: %d donors x %d tissues x %d genes.", len(samples), mdata.n_obs, len(mods), len(var)
    )
    return mdata


def _sample_table(
    gct_samples: pd.Index, attributes: pd.DataFrame, reads_gct, sample_attributes
) -> pd.DataFrame:
    """Return the GCT samples' annotations with ``donor`` and ``tissue`` columns, checking they are all annotated."""
    missing = gct_samples.difference(attributes.index, sort=False)
    if len(missing):
        raise ValueError(
            f"{len(missing)} samples of {reads_gct} are missing from the sample attributes {sample_attributes}: "
            f"{preview(missing)}."
        )
    table = attributes.loc[gct_samples].copy()
    no_tissue = table["SMTSD"].isna()
    if no_tissue.any():
        raise ValueError(
            f"{sample_attributes}: samples without a tissue (SMTSD): {preview(table.index[no_tissue])}."
        )
    table["donor"] = [donor_id(s) for s in table.index]
    table["tissue"] = [tissue_id(s) for s in table["SMTSD"]]
    clashes = table.groupby("tissue")["SMTSD"].nunique()
    if (clashes > 1).any():
        bad = clashes.index[clashes > 1]
        raise ValueError(f"Different SMTSD names map to the same tissue identifier(s) {preview(bad)}.")
    for col in table.columns:
        if table[col].dtype == object and col not in ("donor", "tissue", *_TISSUE_COLUMNS):
            table[col] = table[col].astype("category")
    return table


def _resolve_tissues(names: list[str], available: list[str], argument: str) -> list[str]:
    """Return tissue identifiers for ``names`` (identifiers or SMTSD names), raising on unknown tissues."""
    ids = [tissue_id(n) for n in names]
    unknown = [n for n, i in zip(names, ids, strict=True) if i not in available]
    if unknown:
        raise ValueError(
            f"Unknown tissue(s) in `{argument}`: {preview(unknown)}. Available: {preview(available, 60)}."
        )
    return ids


def _select_tissues(samples: pd.DataFrame, tissues: list[str] | None, drop: list[str] | None) -> pd.DataFrame:
    """Return the samples of the kept tissues, logging what is dropped."""
    available = sorted(samples["tissue"].unique())
    keep = set(available)
    if tissues is not None:
        keep &= set(_resolve_tissues(tissues, available, "tissues"))
    if drop is not None:
        keep -= set(_resolve_tissues(drop, available, "drop_tissues"))
    dropped = samples["tissue"].isin(set(available) - keep)
    if dropped.any():
        logger.info(
            "Dropping %d of %d tissues (%d samples): %s.",
            len(available) - len(keep),
            len(available),
            int(dropped.sum()),
            ", ".join(sorted(set(available) - keep)),
        )
    return samples[~dropped]


def _select_donors(samples: pd.DataFrame, donors: list[str] | None) -> pd.DataFrame:
    """Return the samples of ``donors``, raising on donors that have no sample."""
    if donors is None:
        return samples
    wanted = pd.Index(donors)
    if wanted.has_duplicates:
        raise ValueError(f"Donors listed twice in `donors`: {preview(duplicates(wanted))}.")
    missing = wanted.difference(pd.Index(samples["donor"].unique()), sort=False)
    if len(missing):
        raise ValueError(
            f"{len(missing)} donors in `donors` have no sample in the kept tissues: {preview(missing)}."
        )
    kept = samples["donor"].isin(wanted)
    if (~kept).any():
        logger.info(
            "Keeping %d listed donors; dropping %d other donors (%d samples).",
            len(wanted),
            samples.loc[~kept, "donor"].nunique(),
            int((~kept).sum()),
        )
    return samples[kept]


def _check_unique_pairs(samples: pd.DataFrame) -> None:
    """Raise a :class:`ValueError` naming donors with more than one sample of the same tissue."""
    dup = samples.duplicated(["donor", "tissue"], keep=False)
    if dup.any():
        pairs = samples[dup].groupby(["donor", "tissue"], sort=True).groups
        listed = [f"{d}/{t} ({', '.join(ids)})" for (d, t), ids in list(pairs.items())[:5]]
        raise ValueError(
            f"{len(pairs)} donor/tissue pairs have more than one sample, e.g. {'; '.join(listed)}. "
            "Keep one sample per donor and tissue."
        )


def _drop_sparse_donors(samples: pd.DataFrame, min_tissues: int) -> pd.DataFrame:
    """Return the samples of donors with at least ``min_tissues`` tissues, logging the drop."""
    n_tissues = samples.groupby("donor")["tissue"].transform("size")
    dropped = n_tissues < min_tissues
    if dropped.any():
        logger.info(
            "Dropping %d donors (%d samples) with fewer than %d tissues.",
            samples.loc[dropped, "donor"].nunique(),
            int(dropped.sum()),
            min_tissues,
        )
    return samples[~dropped]


def _donor_table(samples: pd.DataFrame, subject_phenotypes) -> pd.DataFrame:
    """Return the donor-level ``.obs``: sorted donors, with phenotypes when a file is given."""
    donors = pd.Index(sorted(samples["donor"].unique()))
    if subject_phenotypes is None:
        return pd.DataFrame(index=donors)
    phenotypes = read_subject_phenotypes(subject_phenotypes)
    missing = donors.difference(phenotypes.index, sort=False)
    if len(missing):
        raise ValueError(f"{len(missing)} donors are missing from {subject_phenotypes}: {preview(missing)}.")
    obs = phenotypes.loc[donors].copy()
    for col in obs.columns:
        if isinstance(obs[col].dtype, pd.CategoricalDtype):
            obs[col] = obs[col].cat.remove_unused_categories()
    return obs


def _gene_table(gene_ids: np.ndarray, symbols: np.ndarray, reads_gct) -> pd.DataFrame:
    """Return ``var``: unique gene symbols as index and Ensembl ids in ``gene_ids``."""
    ids = pd.Index(gene_ids)
    if ids.has_duplicates:
        raise ValueError(f"{reads_gct}: duplicated gene ids (Name column): {preview(duplicates(ids))}.")
    names = pd.Index([s if s else i for s, i in zip(symbols, gene_ids, strict=True)])
    unique = make_index_unique(names)
    if not unique.equals(names):
        logger.info(
            "Made %d duplicated gene symbols unique by appending '-1', '-2', ...",
            int(names.duplicated().sum()),
        )
    return pd.DataFrame({"gene_ids": ids.to_numpy(dtype=object)}, index=pd.Index(unique, dtype=object))


def _gene_rows(var: pd.DataFrame, genes: list[str], reads_gct) -> np.ndarray:
    """Return the file rows of ``genes`` (gene ids or unique symbols), raising on unknown or repeated genes."""
    wanted = pd.Index(genes, dtype=object)
    if wanted.has_duplicates:
        raise ValueError(f"Genes listed twice in `genes`: {preview(duplicates(wanted))}.")
    by_id = pd.Index(var["gene_ids"]).get_indexer(wanted)
    rows = np.where(by_id >= 0, by_id, var.index.get_indexer(wanted))
    if (rows < 0).any():
        raise ValueError(
            f"{int((rows < 0).sum())} of {len(wanted)} genes in `genes` are not in {reads_gct}, neither as gene "
            f"ids (Name) nor as gene symbols (Description, made unique): {preview(wanted[rows < 0])}."
        )
    repeated = pd.Index(rows).duplicated()
    if repeated.any():
        raise ValueError(
            f"Genes given twice in `genes`, once by id and once by symbol: {preview(wanted[repeated])}."
        )
    return rows


def _read_counts(
    reads_gct,
    samples: pd.Index,
    rows: np.ndarray,
    n_rows: int,
    columns: dict[str, np.ndarray],
    chunk_size: int,
) -> dict[str, np.ndarray]:
    """Return each tissue's donors x genes ``int32`` counts of the given file rows, filled chunk by chunk.

    ``columns`` gives each tissue's positions in ``samples``; the output's genes follow ``rows``.
    """
    out = {t: np.empty((len(cols), len(rows)), dtype=np.int32) for t, cols in columns.items()}
    target = np.full(n_rows, -1, dtype=np.int64)
    target[rows] = np.arange(len(rows))
    n_read = 0
    for ordinals, counts in iter_gct_counts(reads_gct, samples, rows=target >= 0, chunk_size=chunk_size):
        genes = target[ordinals]
        for t, cols in columns.items():
            out[t][:, genes] = counts[:, cols].T
        n_read += len(ordinals)
    if n_read != len(rows):
        raise ValueError(f"{reads_gct}: read {n_read} gene rows, expected {len(rows)}; did the file change?")
    return out
