"""The HYFA model class :cite:p:`Vinas2023`."""

from ._model import HYFA

__all__ = ["HYFA"]
