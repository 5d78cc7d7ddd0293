"""Preprocessing: GTEx-style normalization of multi-tissue read counts."""

from ._normalize import normalize_gtex

__all__ = ["normalize_gtex"]
