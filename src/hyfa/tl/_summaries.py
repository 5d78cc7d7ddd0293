"""Summaries of the imputation benchmark: per-target scores with Mann-Whitney-Wilcoxon tests, and win counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from hyfa._checks import check_results as _check_results

from ._data_access import _format_names

__all__ = ["summarize_evaluation", "win_counts"]


def _finite(values: np.ndarray) -> np.ndarray:
    """Return the finite entries of ``values`` as ``float64``."""
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def summarize_evaluation(results: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Return per-target mean and median scores, with two-sided Mann-Whitney-Wilcoxon tests against a reference.

    For every source setting, metric and target tissue, each method's scores (per-donor or per-gene
    Pearson r) are summarized and compared with those of the ``reference`` method by a two-sided
    Mann-Whitney-Wilcoxon test (:func:`scipy.stats.mannwhitneyu`), as in :cite:p:`Vinas2023`. NaN scores
    (undefined correlations) are left out.

    Parameters
    ----------
    results
        Tidy table of :func:`evaluate_imputation`.
    reference
        Method the others are compared with; ``None`` uses the first method of ``results`` (the model).

    Returns
    -------
    One row per (``sources``, ``metric``, ``target``, ``method``), in the order of ``results``, with
    columns ``n_donors`` (donors scored), ``n`` (finite scores), ``mean``, ``median``, ``reference``,
    ``reference_mean``, ``difference`` (``reference_mean - mean``), ``pvalue`` (NaN for the reference
    itself and where either side has no finite score) and ``reference_better`` (``reference_mean >
    mean``; False where either is NaN).

    Examples
    --------
    >>> summary = hyfa.tl.summarize_evaluation(results)
    >>> summary.pivot_table(index="target", columns=["sources", "method", "metric"], values="mean")
    """
    _check_results(results)
    methods = list(pd.unique(results["method"]))
    reference = methods[0] if reference is None else reference
    if reference not in methods:
        raise ValueError(f"Unknown reference method {reference!r}; methods: {_format_names(methods)}.")
    keys = ["sources", "metric", "target"]
    n_donors = (
        results[results["metric"] == "per-sample"].groupby(["sources", "target", "method"], sort=False).size()
    )
    records = []
    for (setting, metric, target), group in results.groupby(keys, sort=False):
        values = {m: g["value"].to_numpy() for m, g in group.groupby("method", sort=False)}
        ref = _finite(values[reference]) if reference in values else None
        ref_mean = float(ref.mean()) if ref is not None and len(ref) else np.nan
        for method, vals in values.items():
            finite = _finite(vals)
            mean = float(finite.mean()) if len(finite) else np.nan
            pvalue = np.nan
            if method != reference and ref is not None and len(ref) and len(finite):
                pvalue = float(stats.mannwhitneyu(ref, finite, alternative="two-sided").pvalue)
            records.append(
                {
                    "sources": setting,
                    "metric": metric,
                    "target": target,
                    "method": method,
                    "n_donors": int(n_donors.get((setting, target, method), 0)),
                    "n": len(finite),
                    "mean": mean,
                    "median": float(np.median(finite)) if len(finite) else np.nan,
                    "reference": reference,
                    "reference_mean": ref_mean,
                    "difference": ref_mean - mean,
                    "pvalue": pvalue,
                    "reference_better": bool(ref_mean > mean),
                }
            )
    return pd.DataFrame.from_records(records)


def win_counts(summary: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Return, per setting, metric and method, in how many target tissues the reference method scores higher.

    Parameters
    ----------
    summary
        Output of :func:`summarize_evaluation` (a table of :func:`evaluate_imputation` is summarized first,
        with its first method as the reference).
    alpha
        Significance level of the per-target Mann-Whitney-Wilcoxon p-values.

    Returns
    -------
    One row per (``sources``, ``metric``, ``method``) other than the reference, with ``reference``,
    ``n_targets`` (targets where both mean scores are defined), ``wins`` (targets where the reference's
    mean is higher), ``significant_wins`` / ``significant_losses`` (higher / lower mean with ``pvalue <
    alpha``), and ``reference_mean`` / ``method_mean``, the means over those targets of the per-target
    means. Methods with no defined score in a setting (e.g. the per-gene r of mean imputation) have
    ``n_targets == 0``.

    Examples
    --------
    >>> wins = hyfa.tl.win_counts(hyfa.tl.summarize_evaluation(results))
    >>> for row in wins.itertuples():
    ...     print(
    ...         f"{row.sources}, {row.metric}: {row.reference} > {row.method} in {row.wins}/{row.n_targets}"
    ...     )
    """
    if "value" in summary.columns:
        summary = summarize_evaluation(summary)
    needed = ["sources", "metric", "target", "method", "reference", "mean", "reference_mean", "pvalue"]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(
            f"Not a summary of summarize_evaluation: missing column(s) {_format_names(missing)}."
        )
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    others = summary[summary["method"] != summary["reference"]]
    records = []
    for (setting, metric, method), group in others.groupby(["sources", "metric", "method"], sort=False):
        both = group[np.isfinite(group["mean"]) & np.isfinite(group["reference_mean"])]
        better = both["reference_mean"] > both["mean"]
        significant = both["pvalue"] < alpha
        records.append(
            {
                "sources": setting,
                "metric": metric,
                "method": method,
                "reference": group["reference"].iloc[0],
                "n_targets": len(both),
                "wins": int(better.sum()),
                "significant_wins": int((better & significant).sum()),
                "significant_losses": int(((both["reference_mean"] < both["mean"]) & significant).sum()),
                "reference_mean": float(both["reference_mean"].mean()) if len(both) else np.nan,
                "method_mean": float(both["mean"].mean()) if len(both) else np.nan,
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "sources",
            "metric",
            "method",
            "reference",
            "n_targets",
            "wins",
            "significant_wins",
            "significant_losses",
            "reference_mean",
            "method_mean",
        ],
    )
