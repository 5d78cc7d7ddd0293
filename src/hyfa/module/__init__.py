"""Torch modules of HYFA :cite:p:`Vinas2023`."""

from ._masks import fixed_split, random_split, split_sources_targets
from ._module import HYFAModule

__all__ = ["HYFAModule", "fixed_split", "random_split", "split_sources_targets"]
