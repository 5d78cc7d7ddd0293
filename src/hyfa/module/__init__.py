"""Torch modules of HYFA :cite:p:`Vinas2023`."""

from ._masks import fixed_split, random_split, split_sources_targets
from ._module import ENCODER_TARGET_SUM, GENE_LIKELIHOODS, HYFAModule
from ._signatures import SIGNATURE_KEYS, CellTypeSignatureModule, signature_distribution

__all__ = [
    "ENCODER_TARGET_SUM",
    "GENE_LIKELIHOODS",
    "SIGNATURE_KEYS",
    "CellTypeSignatureModule",
    "HYFAModule",
    "fixed_split",
    "random_split",
    "signature_distribution",
    "split_sources_targets",
]
