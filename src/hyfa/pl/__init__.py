"""Plotting: per-tissue comparison of imputation methods."""

from ._comparison import imputation_comparison

__all__ = ["imputation_comparison"]
