"""Checks and name listings shared by hyfa.data, hyfa.pp, hyfa.tl, hyfa.pl and the model: they raise early, naming the offenders."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import sparse

_MAX_LISTED = 5
_COUNTS = "finite, non-negative integer read counts"
_NONNEG = "finite, non-negative values"


def preview(names: Iterable, max_listed: int = _MAX_LISTED, quote: bool = True) -> str:
    """Return the first ``max_listed`` of ``names`` comma-separated (quoted with ``quote``), plus how many there are."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) if quote else n for n in names[:max_listed])
    if len(names) > max_listed:
        shown += f", ... ({len(names)} in total)"
    return shown


def duplicates(index: pd.Index) -> pd.Index:
    """Return the values that occur more than once in ``index``."""
    return index[index.duplicated()].unique()


def dense(X) -> np.ndarray:
    """Return ``X`` (dense or sparse) as a dense numpy array."""
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


def check_counts(
    X,
    obs_names: Sequence[str],
    var_names: Sequence[str],
    where: str,
) -> None:
    """Raise a :class:`ValueError` unless ``X`` holds finite, non-negative integer counts.

    Parameters
    ----------
    X
        Samples x genes matrix, dense or sparse.
    obs_names
        Row names (donors or samples), used in the error message.
    var_names
        Column names (genes), used in the error message.
    where
        What ``X`` is, e.g. ``"tissue 'Lung'"``, used in the error message.
    """
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.dtype.kind in "biu":
        if values.dtype.kind == "i" and values.size and values.min() < 0:
            _raise_bad(X, lambda v: v < 0, obs_names, var_names, where, "negative counts", _COUNTS)
        return
    if values.dtype.kind != "f":
        raise ValueError(f"{where}: counts must be numeric, got dtype {values.dtype}.")
    _raise_bad(X, lambda v: ~np.isfinite(v), obs_names, var_names, where, "NaN or infinite counts", _COUNTS)
    _raise_bad(X, lambda v: v < 0, obs_names, var_names, where, "negative counts", _COUNTS)
    _raise_bad(X, lambda v: v != np.round(v), obs_names, var_names, where, "non-integer counts", _COUNTS)


def _raise_bad(X, test, obs_names, var_names, where: str, what: str, expected: str) -> None:
    """Raise a :class:`ValueError` naming a few (row, column) pairs where ``test`` holds."""
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if not test(values).any():
        return
    matrix = dense(X)
    rows, cols = np.nonzero(test(matrix))
    pairs = [
        f"{obs_names[r]}/{var_names[c]}={matrix[r, c].item()!r}"
        for r, c in zip(rows[:_MAX_LISTED], cols[:_MAX_LISTED], strict=True)
    ]
    raise ValueError(
        f"{where} has {len(rows)} {what} (expected {expected}), e.g. donor/gene {', '.join(pairs)}."
    )


def check_finite_nonnegative(X, obs_names: Sequence[str], var_names: Sequence[str], where: str) -> None:
    """Raise a :class:`ValueError` unless ``X`` is finite and non-negative (e.g. a TPM layer)."""
    values = X.data if sparse.issparse(X) else np.asarray(X)
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{where}: values must be numeric, got dtype {values.dtype}.")
    if values.dtype.kind == "f":
        _raise_bad(
            X, lambda v: ~np.isfinite(v), obs_names, var_names, where, "NaN or infinite values", _NONNEG
        )
    _raise_bad(X, lambda v: v < 0, obs_names, var_names, where, "negative values", _NONNEG)


#: Columns every table of :func:`hyfa.tl.evaluate_imputation` has (read by hyfa.tl and hyfa.pl).
EVALUATION_COLUMNS = ("method", "sources", "target", "metric", "value")


def check_results(results: pd.DataFrame) -> None:
    """Raise unless ``results`` is a non-empty table of :func:`~hyfa.tl.evaluate_imputation`."""
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"Expected the DataFrame of evaluate_imputation, got {type(results).__name__}.")
    missing = [c for c in EVALUATION_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(
            f"Not a table of evaluate_imputation: missing column(s) {preview(missing)}; "
            f"has {preview(list(results.columns))}."
        )
    if results.empty:
        raise ValueError("The results table is empty.")
