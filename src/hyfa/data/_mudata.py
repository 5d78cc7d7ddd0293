"""MuData assembly for the readers and simulators (implemented in :mod:`hyfa._mudata`, shared with pp and the model)."""

from hyfa._mudata import build_mudata, copy_mudata

__all__ = ["build_mudata", "copy_mudata"]
