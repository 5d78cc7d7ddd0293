"""GTEx-style per-tissue normalization of read counts: expression filter, TMM and inverse-normal transform."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from mudata import MuData
from rnanorm import TMM
from scipy import special, stats

from hyfa._checks import check_counts, check_finite_nonnegative, dense, duplicates, preview
from hyfa._mudata import copy_mudata

logger = logging.getLogger(__name__)

#: Tissues with fewer samples get degenerate normalized values (one sample: all 0; two: +-0.43).
_MIN_SAMPLES = 3


def normalize_gtex(
    mdata: MuData,
    tpm_layer: str | None = None,
    min_reads: float = 6,
    min_tpm: float = 0.1,
    min_fraction: float = 0.2,
    key_added: str = "normalized",
    copy: bool = False,
) -> MuData | None:
    r"""Normalize read counts tissue by tissue as the GTEx eQTL pipeline does, flagging expressed genes.

    This is the preprocessing of HYFA :cite:p:`Vinas2023`, which follows the GTEx eQTL pipeline.
    In each tissue (modality) separately:

    1. A gene is *expressed* if at least ``min_fraction`` of the tissue's samples have at least
       ``min_reads`` reads and, when ``tpm_layer`` is given, at least ``min_tpm`` TPM.
    2. TMM normalization factors are computed with :class:`rnanorm.TMM` from the counts of the
       tissue's expressed genes, and every gene is scaled to counts per million of the
       TMM-adjusted library size (the sum of the expressed genes' counts times the TMM factor).
       The GTEx pipeline computes the factors on the whole transcriptome; restricting them to the
       expressed genes keeps rarely detected genes from driving the factors when only a panel of
       genes is available.
    3. Each gene is rank-based inverse-normal transformed across the tissue's samples, as in the
       GTEx pipeline: :math:`\Phi^{-1}(r / (n + 1))` with ``r`` the rank (ties get their average
       rank) and ``n`` the number of samples.

    Nothing is deleted and ``.X`` keeps the raw counts; results are stored as in
    :func:`scanpy.pp.highly_variable_genes`. Tissues are normalized one at a time, so memory
    beyond the output is bounded by a few copies of the largest tissue.

    Parameters
    ----------
    mdata
        One modality per tissue with raw read counts (finite, non-negative integers) in ``.X``;
        every tissue must have the same genes.
    tpm_layer
        Layer of every modality holding TPM values, to also filter genes on ``min_tpm``.
    min_reads
        Minimum read count of a sample for a gene to count as detected there.
    min_tpm
        Minimum TPM of a sample (with ``tpm_layer``) for a gene to count as detected there.
    min_fraction
        Minimum fraction of a tissue's samples in which a gene must be detected.
    key_added
        Layer of each modality that receives the normalized values.
    copy
        Return a normalized copy instead of modifying ``mdata``.

    Returns
    -------
    ``None``, or a modified copy with ``copy=True``. Adds to each modality

    - ``.layers[key_added]``: ``float32`` normalized expression of all genes;
    - ``.var["expressed"]``: whether the gene passes the filter in this tissue;
    - ``.var["common"]``: whether the gene passes the filter in every tissue (same in all);

    and the parameters to ``mdata.uns["normalize_gtex"]``.

    Warns
    -----
    UserWarning
        Naming the tissues with fewer than 3 samples. They are normalized like the others, but
        their normalized values are degenerate (with one sample every value is 0, with two they
        are +-0.43) and their expression filter rests on one or two samples, yet it still counts
        for ``.var["common"]``. Drop such tissues (e.g. ``read_gtex(..., drop_tissues=...)``)
        unless that is intended.

    Examples
    --------
    >>> import hyfa
    >>> mdata = hyfa.data.gtex_acmg59()
    >>> hyfa.pp.normalize_gtex(mdata)
    >>> int(mdata["Lung"].var["common"].sum())
    55
    """
    if not isinstance(mdata, MuData):
        raise TypeError(
            f"normalize_gtex expects a MuData with one modality per tissue, got {type(mdata).__name__}."
        )
    _check_parameters(min_reads, min_tpm, min_fraction, key_added)
    tissues = list(mdata.mod)
    if not tissues:
        raise ValueError("mdata has no modalities (tissues).")
    _check_same_genes(mdata, tissues)

    # First pass: check everything before any work, keeping only the per-tissue gene masks.
    expressed = {}
    for t in tissues:
        counts = _tissue_counts(mdata, t, tpm_layer)
        expressed[t] = _expressed(mdata, t, counts, tpm_layer, min_reads, min_tpm, min_fraction)
        _check_normalizable(mdata, t, counts, expressed[t])
        del counts
    _warn_small_tissues(mdata, tissues)

    normalized = {}
    for t in tissues:
        cpm = _tmm_cpm(dense(mdata.mod[t].X).astype(np.float64), expressed[t], t, mdata.mod[t].obs_names)
        normalized[t] = _inverse_normal(cpm).astype(np.float32)
        del cpm
    genes = mdata.mod[tissues[0]].var_names
    common = np.logical_and.reduce(
        [pd.Series(expressed[t], index=mdata.mod[t].var_names)[genes] for t in tissues]
    )
    common = pd.Series(common, index=genes)

    if copy:
        mdata = copy_mudata(mdata)
    for t in tissues:
        adata = mdata.mod[t]
        adata.layers[key_added] = normalized.pop(t)
        adata.var["expressed"] = expressed[t]
        adata.var["common"] = common[adata.var_names].to_numpy()
    params = {
        "min_reads": float(min_reads),
        "min_fraction": float(min_fraction),
        "key_added": key_added,
        "tmm_genes": "expressed",
        "inverse_normal": "rank / (n + 1), average ranks for ties",
    }
    if tpm_layer is not None:
        params.update(tpm_layer=tpm_layer, min_tpm=float(min_tpm))
    mdata.uns["normalize_gtex"] = params
    logger.info(
        "Normalized %d tissues; %d of %d genes are expressed in every tissue (var['common']).",
        len(tissues),
        int(common.sum()),
        len(genes),
    )
    return mdata if copy else None


def _check_parameters(min_reads, min_tpm, min_fraction, key_added) -> None:
    """Raise a :class:`ValueError` naming the first invalid parameter."""
    if not np.isfinite(min_reads) or min_reads < 0:
        raise ValueError(f"min_reads must be a non-negative number, got {min_reads!r}.")
    if not np.isfinite(min_tpm) or min_tpm < 0:
        raise ValueError(f"min_tpm must be a non-negative number, got {min_tpm!r}.")
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction must be between 0 and 1, got {min_fraction!r}.")
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"key_added must be a non-empty string, got {key_added!r}.")


def _check_same_genes(mdata: MuData, tissues: list[str]) -> None:
    """Raise a :class:`ValueError` naming a tissue whose genes differ from the first tissue's, or repeat."""
    reference = mdata.mod[tissues[0]].var_names
    for t in tissues:
        names = mdata.mod[t].var_names
        if names.has_duplicates:
            raise ValueError(
                f"Tissue {t!r} has duplicated genes {preview(duplicates(names))}; make var_names unique."
            )
        missing, extra = reference.difference(names), names.difference(reference)
        if len(missing) or len(extra):
            raise ValueError(
                f"All tissues must have the same genes: tissue {t!r} lacks {preview(missing) or 'none'} "
                f"and has extra {preview(extra) or 'none'} compared with tissue {tissues[0]!r}."
            )


def _tissue_counts(mdata: MuData, tissue: str, tpm_layer: str | None) -> np.ndarray:
    """Return a tissue's counts as a dense array (no copy if already dense), checking them (and its TPM layer) first."""
    adata = mdata.mod[tissue]
    if adata.n_obs == 0:
        raise ValueError(f"Tissue {tissue!r} has no samples.")
    check_counts(adata.X, adata.obs_names, adata.var_names, f"Tissue {tissue!r} (.X)")
    if tpm_layer is not None:
        if tpm_layer not in adata.layers:
            raise ValueError(
                f"Tissue {tissue!r} has no layer {tpm_layer!r} (tpm_layer); layers: {list(adata.layers)}."
            )
        check_finite_nonnegative(
            adata.layers[tpm_layer],
            adata.obs_names,
            adata.var_names,
            f"Tissue {tissue!r} (layer {tpm_layer!r})",
        )
    return dense(adata.X)


def _warn_small_tissues(mdata: MuData, tissues: list[str]) -> None:
    """Warn, naming them, about tissues with too few samples for a meaningful normalization."""
    small = [f"{t!r} ({mdata.mod[t].n_obs})" for t in tissues if mdata.mod[t].n_obs < _MIN_SAMPLES]
    if small:
        warnings.warn(
            f"Tissues with fewer than {_MIN_SAMPLES} samples (sample counts in brackets): {', '.join(small)}. "
            "Their normalized values are degenerate (one sample: all 0; two: +-0.43) and their expression "
            "filter rests on one or two samples, yet it still counts for var['common']; consider dropping them.",
            UserWarning,
            stacklevel=3,
        )


def _expressed(mdata, tissue, counts, tpm_layer, min_reads, min_tpm, min_fraction) -> np.ndarray:
    """Return the boolean mask of genes detected in at least ``min_fraction`` of the tissue's samples."""
    needed = min_fraction * counts.shape[0]
    passes = (counts >= min_reads).sum(axis=0) >= needed
    if tpm_layer is not None:
        tpm = dense(mdata.mod[tissue].layers[tpm_layer])
        passes &= (tpm >= min_tpm).sum(axis=0) >= needed
    return np.asarray(passes, dtype=bool)


def _check_normalizable(mdata: MuData, tissue: str, counts: np.ndarray, expressed: np.ndarray) -> None:
    """Raise a :class:`ValueError` if a tissue has no expressed gene or a sample without reads in them."""
    if not expressed.any():
        raise ValueError(
            f"No gene passes the expression filter in tissue {tissue!r}, so TMM factors cannot be computed; "
            "lower min_reads/min_fraction or drop this tissue."
        )
    library = counts[:, expressed].sum(axis=1, dtype=np.float64)
    if (library <= 0).any():
        raise ValueError(
            f"Tissue {tissue!r}: samples of donors {preview(mdata.mod[tissue].obs_names[library <= 0])} have "
            "no reads in the tissue's expressed genes, so their TMM factor is undefined; remove these samples."
        )


def _tmm_cpm(counts: np.ndarray, expressed: np.ndarray, tissue: str, donors: pd.Index) -> np.ndarray:
    """Return counts per million of the TMM-adjusted library size, with TMM factors from the expressed genes.

    ``counts`` (``float64``) is overwritten with the result.
    """
    kept = counts[:, expressed]
    factors = _tmm_factors(kept)
    bad = ~np.isfinite(factors) | (factors <= 0)
    if bad.any():
        raise ValueError(f"Tissue {tissue!r}: TMM factors are undefined for donors {preview(donors[bad])}.")
    library = kept.sum(axis=1) * factors
    del kept
    counts /= library[:, None]
    counts *= 1e6
    return counts


class _TMMOnce(TMM):
    """:class:`rnanorm.TMM` that keeps the factors it computes while fitting."""

    def _get_norm_factors(self, X):
        self.fit_factors_ = super()._get_norm_factors(X)
        return self.fit_factors_


def _tmm_factors(counts: np.ndarray) -> np.ndarray:
    """Return the TMM normalization factors of the samples (rows) of ``counts``, computed once.

    ``TMM().fit(X).get_norm_factors(X)`` computes the factors twice: ``fit`` computes them to
    rescale them to a geometric mean of 1, and ``get_norm_factors`` computes them again. This
    returns the same values from the computation done while fitting.
    """
    tmm = _TMMOnce().fit(counts)
    if not hasattr(tmm, "fit_factors_"):  # pragma: no cover - another rnanorm layout
        return tmm.get_norm_factors(counts)
    return tmm.fit_factors_ / tmm.geometric_mean_


def _inverse_normal(values: np.ndarray) -> np.ndarray:
    """Return the rank-based inverse-normal transform of each column: ``Phi^-1(rank / (n + 1))``."""
    quantiles = stats.rankdata(values, axis=0, method="average")
    quantiles /= values.shape[0] + 1
    return special.ndtri(quantiles, out=quantiles)
