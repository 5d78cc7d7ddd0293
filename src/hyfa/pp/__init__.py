"""Preprocessing: GTEx-style normalization of multi-tissue read counts and cell-type signatures from single cells."""

from ._normalize import normalize_gtex
from ._signatures import aggregate_signatures

__all__ = ["normalize_gtex", "aggregate_signatures"]
