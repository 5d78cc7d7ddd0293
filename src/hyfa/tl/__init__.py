"""Tools: evaluation metrics, imputation baselines and the paper's evaluation protocol."""

from ._baseline_factory import default_baselines
from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._bed import (
    phenotype_bed,
    read_gene_positions,
    read_phenotype_bed,
    write_phenotype_bed,
    write_phenotype_beds,
)
from ._embeddings import donor_embeddings, gtex_organ_systems, tissue_embeddings
from ._enrichment import BUNDLED_LIBRARIES, gene_set_library, metagene_enrichment
from ._eqtl import benjamini_hochberg, map_cis_eqtl, score_egenes
from ._evaluate import evaluate_imputation
from ._metrics import pearson_per_gene, pearson_per_sample
from ._predictability import Predictability, predictability
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
    "tissue_embeddings",
    "donor_embeddings",
    "gtex_organ_systems",
    "predictability",
    "Predictability",
    "metagene_enrichment",
    "gene_set_library",
    "BUNDLED_LIBRARIES",
]
