"""HYFA: hypergraph factorization for multi-tissue gene expression imputation :cite:p:`Vinas2023`."""

from importlib.metadata import PackageNotFoundError, version

from . import data, pl, pp, tl
from ._presets import PRESETS, Preset, preset
from .model import HYFA

try:
    __version__ = version("hyfa")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["HYFA", "PRESETS", "Preset", "preset", "data", "pl", "pp", "tl", "__version__"]
