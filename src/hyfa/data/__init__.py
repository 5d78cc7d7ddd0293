"""Data: GTEx readers, the bundled GTEx v8 excerpt, simulated multi-tissue and single-cell data and long-format conversion."""

from ._bundled import gtex_acmg59
from ._genotypes import simulate_eqtl
from ._gtex import read_gtex
from ._long import from_long, to_long
from ._simulate import simulate
from ._simulate_single_cell import simulate_single_cell
from ._tissue import PAPER_DROPPED_TISSUES, tissue_id

__all__ = [
    "read_gtex",
    "gtex_acmg59",
    "simulate",
    "simulate_eqtl",
    "simulate_single_cell",
    "from_long",
    "to_long",
    "tissue_id",
    "PAPER_DROPPED_TISSUES",
]
