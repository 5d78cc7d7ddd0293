"""Tools: evaluation metrics, imputation baselines and the paper's evaluation protocol."""

from ._baseline_factory import default_baselines
from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._evaluate import evaluate_imputation
from ._metrics import pearson_per_gene, pearson_per_sample
from ._settings import ACCESSIBLE_TISSUES, PAPER_SOURCES, evaluation_donors
from ._summaries import summarize_evaluation, win_counts

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
