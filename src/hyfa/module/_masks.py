"""Pseudo-masks: which of a donor's observed tissues are sources and which are targets :cite:p:`Vinas2023`.

For a donor with ``n`` observed tissues, ``k = 1 + floor((n - 1) u ** exponent)`` of them, ``u ~ Uniform[0, 1)``,
chosen uniformly without replacement, are sources; the rest are targets. ``exponent = 1`` is the paper's
``k ~ Uniform{1, ..., n - 1}``; larger exponents draw few sources more often. Donors with one tissue have
it as a source and no target. Training draws fresh masks each time a donor is drawn;
validation derives them from the donor's index and a seed, so they never change.
"""

from __future__ import annotations

import numpy as np
import torch


def split_sources_targets(
    observed: torch.Tensor,
    tissue_uniforms: torch.Tensor,
    count_uniforms: torch.Tensor,
    exponent: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return boolean ``(source, target)`` masks of shape ``(n_donors, n_tissues)``.

    Parameters
    ----------
    observed
        Boolean ``(n_donors, n_tissues)``: the donor has the tissue.
    tissue_uniforms
        Uniform ``[0, 1)`` numbers, one per donor and tissue: the order in which tissues become sources.
    count_uniforms
        Uniform ``[0, 1)`` numbers, one per donor: the number of sources ``k``.
    exponent
        ``k = 1 + floor((n - 1) * count_uniforms ** exponent)``; 1 draws ``k`` uniformly.
    """
    n_observed = observed.sum(dim=1)
    n_sources = (count_uniforms**exponent * (n_observed - 1).clamp(min=0)).floor().long() + 1
    n_sources = torch.minimum(n_sources, n_observed)
    scores = torch.where(observed, tissue_uniforms, torch.full_like(tissue_uniforms, 2.0))
    rank = scores.argsort(dim=1).argsort(dim=1)
    source = observed & (rank < n_sources[:, None])
    return source, observed & ~source


def random_split(observed: torch.Tensor, generator: torch.Generator | None = None, exponent: float = 1.0):
    """Return fresh random ``(source, target)`` masks (see :func:`split_sources_targets`)."""
    tissue_uniforms = torch.rand(observed.shape, generator=generator, device=observed.device)
    count_uniforms = torch.rand(observed.shape[0], generator=generator, device=observed.device)
    return split_sources_targets(observed, tissue_uniforms, count_uniforms, exponent)


def _hashed_uniforms(keys: np.ndarray) -> np.ndarray:
    """Return uniform ``[0, 1)`` numbers that depend only on the integer ``keys`` (splitmix64)."""
    z = keys.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def fixed_split(observed: torch.Tensor, donor_indices: torch.Tensor, seed: int = 0, exponent: float = 1.0):
    """Return ``(source, target)`` masks determined by each donor's index and ``seed`` alone."""
    n_tissues = observed.shape[1]
    index = donor_indices.detach().cpu().numpy().astype(np.uint64).reshape(-1, 1)
    columns = np.arange(n_tissues + 1, dtype=np.uint64)[None, :]
    keys = (index * np.uint64(n_tissues + 1) + columns) * np.uint64(1_000_003) + np.uint64(seed)
    uniforms = torch.as_tensor(_hashed_uniforms(keys), dtype=torch.float32, device=observed.device)
    return split_sources_targets(observed, uniforms[:, :n_tissues], uniforms[:, n_tissues], exponent)
