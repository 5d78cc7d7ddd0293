"""Tools: evaluation metrics, imputation baselines and the paper's evaluation protocol."""

from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._evaluate import (
    ACCESSIBLE_TISSUES,
    PAPER_SOURCES,
    default_baselines,
    evaluate_imputation,
    evaluation_donors,
    summarize_evaluation,
    win_counts,
)
from ._metrics import pearson_per_gene, pearson_per_sample

__all__ = [
    "pearson_per_sample",
    "pearson_per_gene",
    "MeanImputation",
    "SurrogateImputation",
    "KNNImputation",
    "TEEBoT",
    "evaluate_imputation",
    "evaluation_donors",
    "summarize_evaluation",
    "win_counts",
    "default_baselines",
    "ACCESSIBLE_TISSUES",
    "PAPER_SOURCES",
]
