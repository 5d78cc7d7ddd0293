"""Plotting: per-tissue comparison of imputation methods."""

from ._comparison import imputation_comparison
from ._predictability import predictability_heatmap, predictability_network

__all__ = ["imputation_comparison", "predictability_heatmap", "predictability_network"]
