"""Tools: evaluation metrics and imputation baselines for multi-tissue gene expression."""

from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._metrics import pearson_per_gene, pearson_per_sample

__all__ = [
    "pearson_per_sample",
    "pearson_per_gene",
    "MeanImputation",
    "SurrogateImputation",
    "KNNImputation",
    "TEEBoT",
]
