"""Torch modules of HYFA :cite:p:`Vinas2023`."""

from ._masks import fixed_split, random_split, split_sources_targets
from ._module import HYFAModule
from ._signatures import CellTypeSignatureHead, SignatureTrainingModule

__all__ = [
    "CellTypeSignatureHead",
    "HYFAModule",
    "SignatureTrainingModule",
    "fixed_split",
    "random_split",
    "split_sources_targets",
]
