"""Evaluation metrics for imputed gene expression."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from ._data_access import _adata_matrix, _format_names


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the Pearson correlation between matching rows of ``x`` and ``y`` (NaN for constant rows)."""
    n = x.shape[1]
    out = np.full(x.shape[0], np.nan, dtype=np.float64)
    if n < 2:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        # Exactly constant rows have an undefined correlation; test them on the raw values, since the
        # floating-point mean of a constant row can leave tiny non-zero residuals after centring.
        constant = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0)
        xc = x - x.mean(axis=1, keepdims=True)
        yc = y - y.mean(axis=1, keepdims=True)
        num = np.einsum("ij,ij->i", xc, yc)
        den = np.sqrt(np.einsum("ij,ij->i", xc, xc) * np.einsum("ij,ij->i", yc, yc))
        r = num / den
    valid = ~constant & np.isfinite(r)
    out[valid] = np.clip(r[valid], -1.0, 1.0)
    return out


def _to_dense(a) -> np.ndarray:
    if sparse.issparse(a):
        a = a.toarray()
    return np.asarray(a, dtype=np.float64)


def _aligned_matrices(
    observed: AnnData | np.ndarray,
    predicted: AnnData | np.ndarray,
    layer: str | None,
    predicted_layer: str | None,
) -> tuple[np.ndarray, np.ndarray, pd.Index, pd.Index]:
    """Return observed and predicted matrices aligned on the observed donors and genes, plus those names."""
    if isinstance(observed, AnnData) != isinstance(predicted, AnnData):
        raise TypeError(
            "`observed` and `predicted` must both be AnnData objects or both be 2-D arrays, got "
            f"{type(observed).__name__} and {type(predicted).__name__}."
        )
    if isinstance(observed, AnnData):
        donors, genes = observed.obs_names, observed.var_names
        if len(donors) == 0 or len(genes) == 0:
            raise ValueError(f"`observed` is empty (shape {observed.shape}).")
        missing_donors = donors.difference(predicted.obs_names, sort=False)
        missing_genes = genes.difference(predicted.var_names, sort=False)
        if len(missing_donors) or len(missing_genes):
            parts = []
            if len(missing_donors):
                parts.append(f"donors {_format_names(missing_donors)}")
            if len(missing_genes):
                parts.append(f"genes {_format_names(missing_genes)}")
            raise ValueError(
                "`predicted` must contain every donor and gene of `observed`; missing "
                + " and ".join(parts)
                + "."
            )
        obs = _adata_matrix(observed, donors, genes, layer, label="`observed`")
        pred = _adata_matrix(
            predicted, donors, genes, predicted_layer, missing_donors="raise", label="`predicted`"
        )
        return obs, pred, pd.Index(donors), pd.Index(genes)

    if layer is not None or predicted_layer is not None:
        raise ValueError("`layer` and `predicted_layer` only apply to AnnData inputs.")
    obs, pred = _to_dense(observed), _to_dense(predicted)
    if obs.ndim != 2 or obs.shape != pred.shape:
        raise ValueError(
            f"`observed` and `predicted` must be 2-D with the same shape, got {obs.shape} and {pred.shape}."
        )
    if obs.size == 0:
        raise ValueError(f"`observed` is empty (shape {obs.shape}).")
    return obs, pred, pd.RangeIndex(obs.shape[0]), pd.RangeIndex(obs.shape[1])


def pearson_per_sample(
    observed: AnnData | np.ndarray,
    predicted: AnnData | np.ndarray,
    *,
    layer: str | None = None,
    predicted_layer: str | None = None,
) -> pd.Series:
    """Pearson correlation across genes between observed and predicted expression, one value per sample.

    This is the per-donor score used to evaluate multi-tissue imputation in :cite:p:`Vinas2023`.

    Parameters
    ----------
    observed
        Ground truth, samples (donors) x genes: an :class:`~anndata.AnnData` or a 2-D array.
    predicted
        Predictions of the same type as ``observed``. AnnData inputs are matched by name: ``predicted``
        is aligned on the ``obs_names`` and ``var_names`` of ``observed`` and must contain all of them
        (extra donors or genes are ignored). Arrays must have the same shape as ``observed``.
    layer
        Layer of ``observed`` to use; ``None`` uses ``.X``.
    predicted_layer
        Layer of ``predicted`` to use; ``None`` uses ``.X``.

    Returns
    -------
    Correlations indexed by ``observed.obs_names`` (a :class:`~pandas.RangeIndex` for arrays). Samples whose
    observed or predicted values are constant (or contain NaN) get NaN.

    Examples
    --------
    >>> r = hyfa.tl.pearson_per_sample(mdata["Lung"][test_donors], imputed, layer="normalized")
    >>> r.median()
    """
    obs, pred, donors, _ = _aligned_matrices(observed, predicted, layer, predicted_layer)
    return pd.Series(_rowwise_pearson(obs, pred), index=donors, name="pearson_r")


def pearson_per_gene(
    observed: AnnData | np.ndarray,
    predicted: AnnData | np.ndarray,
    *,
    layer: str | None = None,
    predicted_layer: str | None = None,
) -> pd.Series:
    """Pearson correlation across samples between observed and predicted expression, one value per gene.

    This is the per-gene score used to evaluate multi-tissue imputation in :cite:p:`Vinas2023`.

    Parameters
    ----------
    observed
        Ground truth, samples (donors) x genes: an :class:`~anndata.AnnData` or a 2-D array.
    predicted
        Predictions of the same type as ``observed``. AnnData inputs are matched by name: ``predicted``
        is aligned on the ``obs_names`` and ``var_names`` of ``observed`` and must contain all of them
        (extra donors or genes are ignored). Arrays must have the same shape as ``observed``.
    layer
        Layer of ``observed`` to use; ``None`` uses ``.X``.
    predicted_layer
        Layer of ``predicted`` to use; ``None`` uses ``.X``.

    Returns
    -------
    Correlations indexed by ``observed.var_names`` (a :class:`~pandas.RangeIndex` for arrays). Genes whose
    observed or predicted values are constant across samples (or contain NaN) get NaN.

    Examples
    --------
    >>> r = hyfa.tl.pearson_per_gene(mdata["Lung"][test_donors], imputed, layer="normalized")
    >>> r.mean()
    """
    obs, pred, _, genes = _aligned_matrices(observed, predicted, layer, predicted_layer)
    return pd.Series(_rowwise_pearson(obs.T, pred.T), index=genes, name="pearson_r")
