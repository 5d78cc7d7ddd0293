"""HYFA: hypergraph factorization for multi-tissue gene expression imputation :cite:p:`Vinas2023`."""

from importlib.metadata import PackageNotFoundError, version

import torch as _torch

from ._compat import check_torch as _check_torch

_check_torch(_torch.__version__)

from . import data, pl, pp, tl  # noqa: E402
from ._presets import PRESETS, Preset, preset  # noqa: E402
from .model import HYFA  # noqa: E402

try:
    __version__ = version("hyfa")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["HYFA", "PRESETS", "Preset", "preset", "data", "pl", "pp", "tl", "__version__"]
