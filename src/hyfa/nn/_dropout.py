"""Dropout masks from 16 random bits per unit, and exact dropout of pre-activations before SiLU.

A unit is dropped with probability ``p`` rounded to a multiple of ``2**-16`` (``0.174`` becomes
``0.17399597``), and kept units are scaled by the inverse of the exact kept fraction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: Dropout probabilities are multiples of ``1 / DROPOUT_LEVELS`` (one 16-bit draw per unit).
DROPOUT_LEVELS = 2**16
#: What a dropped unit's pre-activation is replaced with: SiLU and its derivative are exactly zero
#: there in float32, bfloat16 and float16 (``exp(1e4)`` overflows), and it is finite in all three.
DROPPED_PRE_ACTIVATION = -1e4


def dropout_levels(p: float) -> int:
    """Return the number of the ``DROPOUT_LEVELS`` 16-bit values that drop a unit at rate ``p``."""
    return round(p * DROPOUT_LEVELS)


def dropout_scale(p: float) -> float:
    """Return the factor dropout multiplies kept units by: one over the fraction of units kept."""
    levels = dropout_levels(p)
    return DROPOUT_LEVELS / (DROPOUT_LEVELS - levels) if levels < DROPOUT_LEVELS else 0.0


def dropout_bits(shape: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Return random ``int16`` values of ``shape``: 16 of the 64 random bits of torch's generator per unit.

    Four units per draw, which is several times faster on a CPU than ``torch.bernoulli``.
    """
    n_units = 1
    for size in shape:
        n_units *= size
    words = torch.empty((n_units + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    return words.view(torch.int16)[:n_units].view(tuple(shape))


def _threshold(p: float) -> int:
    """Return the value below which :func:`dropout_bits` drop a unit at rate ``p`` (all of them at ``p = 1``)."""
    return dropout_levels(p) - DROPOUT_LEVELS // 2  # `levels` int16 values lie below it


def dropout_mask(shape: Sequence[int], p: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Return a boolean mask of ``shape``, ``True`` where a unit is dropped (from :func:`dropout_bits`)."""
    levels = dropout_levels(p)
    if levels in (0, DROPOUT_LEVELS):
        return torch.full(tuple(shape), levels > 0, dtype=torch.bool, device=device)
    dropped = torch.empty(tuple(shape), dtype=torch.uint8, device=device)  # faster to write than bool
    torch.lt(dropout_bits(shape, device), _threshold(p), out=dropped)
    return dropped.view(torch.bool)


def drop_pre_activations_(pre: torch.Tensor, bits: torch.Tensor, p: float) -> torch.Tensor:
    """Drop the units of ``pre`` that ``bits`` (:func:`dropout_bits`, same shape) drop at rate ``p``, in place.

    Their pre-activations become :data:`DROPPED_PRE_ACTIVATION`, where ``silu`` and its
    derivative are exactly zero whatever the unit's value was: dropout is exact, and the
    pre-activations alone give the backward pass (no mask is kept). ``lerp`` with weights 0 and 1
    returns its ends exactly, in one pass (several times faster on a CPU than ``masked_fill_``).
    Returns ``pre``.
    """
    weight = torch.lt(bits, _threshold(p), out=torch.empty_like(pre))  # 1 where dropped
    replacement = torch.full((), DROPPED_PRE_ACTIVATION, dtype=pre.dtype, device=pre.device)
    return pre.lerp_(replacement.expand_as(pre), weight)


def drop_units_(pre: torch.Tensor, p: float) -> torch.Tensor:
    """Drop a random fraction ``p`` of the units of ``pre`` in place (see :func:`drop_pre_activations_`)."""
    return drop_pre_activations_(pre, dropout_bits(pre.shape, pre.device), p)
