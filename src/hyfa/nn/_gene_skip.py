"""A gene-level skip connection from a donor's source tissues to each target tissue."""

from __future__ import annotations

import torch
from torch import nn


class GeneSkip(nn.Module):
    """``offset_tg = w_tg * sum_s a_ts z_sg / (1 + sum_s a_ts)``: each target gene reads the same gene of the sources.

    The metagene bottleneck of :cite:t:`Vinas2023` keeps what tissues share at the level of
    programmes; gene-specific variation between donors (a cis-eQTL, a gene-level batch effect) is
    lost unless the target can read it from the same gene in another tissue. ``z_sg`` is the
    donor's standardized expression of gene ``g`` in source tissue ``s``, summed over the donor's
    source tissues only; ``a_ts = softplus(l_ts) >= 0`` is a learned precision of source ``s`` for
    target ``t``, so the sum is a shrunken weighted mean: close to the weighted mean of the sources
    when they are informative together, shrunk towards zero when the donor gave only weakly
    informative sources (e.g. whole blood for a brain region). ``w_tg >= 0`` is a learned coefficient
    per target tissue and gene; it starts at zero, so an untrained skip adds nothing and the model
    starts as without it. It is kept non-negative (read through ``max(w, 0)``, and projected to
    ``>= 0`` at each training forward, i.e. after each optimizer step): a gene's expression in
    related tissues goes the same way across donors, and with a hundred training donors a free
    sign flips the weakly shared genes' skips by chance, which then predict them anti-correlated.
    It is stored divided by :attr:`gain`, so that Adam moves it ``gain`` times faster than the
    network's weights: a cohort of a hundred donors gets only a few hundred optimizer steps, too
    few to reach coefficients of order one at HYFA's learning rate.

    Parameters
    ----------
    n_tissues
        Tissues (sources and targets share one index).
    n_genes
        Genes per tissue.
    """

    #: Factor between the stored parameter and the coefficient ``w``.
    gain: float = 10.0

    def __init__(self, n_tissues: int, n_genes: int):
        super().__init__()
        self.source_logits = nn.Parameter(torch.zeros(n_tissues, n_tissues))  # a_ts = softplus(l_ts)
        self.weight = nn.Parameter(torch.zeros(n_tissues, n_genes))  # w / gain

    @property
    def coefficient(self) -> torch.Tensor:
        """Return the ``(n_tissues, n_genes)`` non-negative coefficients ``w`` of each target tissue and gene."""
        return self.gain * self.weight.clamp(min=0.0)

    def source_weights(self, source_mask: torch.Tensor, tissue_index: torch.Tensor) -> torch.Tensor:
        """Return the ``(n_pairs, n_tissues)`` weights ``a_ts / (1 + sum_s a_ts)`` of each pair's sources (0 elsewhere).

        Parameters
        ----------
        source_mask
            Boolean ``(n_pairs, n_tissues)``: the source tissues of each pair's donor.
        tissue_index
            ``(n_pairs,)`` target tissue of each pair.
        """
        precision = nn.functional.softplus(self.source_logits[tissue_index].float()) * source_mask
        return precision / (1.0 + precision.sum(dim=-1, keepdim=True))

    def forward(
        self,
        values: torch.Tensor,
        donor_row: torch.Tensor,
        source_mask: torch.Tensor,
        tissue_index: torch.Tensor,
    ) -> torch.Tensor:
        """Return the ``(n_pairs, n_genes)`` offset of each (donor, target tissue) pair.

        Parameters
        ----------
        values
            ``(n_donors, n_tissues, n_genes)`` standardized expression; entries of tissues a donor
            did not give are never read.
        donor_row
            ``(n_pairs,)`` row of ``values`` of each pair's donor.
        source_mask
            Boolean ``(n_pairs, n_tissues)``: the source tissues of each pair.
        tissue_index
            ``(n_pairs,)`` target tissue of each pair.
        """
        if self.training:  # projected gradient: the last optimizer step may have left w < 0
            with torch.no_grad():
                self.weight.clamp_(min=0.0)
        weights = self.source_weights(source_mask, tissue_index)
        pooled = values.new_zeros(len(donor_row), values.shape[-1])
        # one pass per source tissue in use: memory stays (n_pairs, n_genes)
        for s in source_mask.any(dim=0).nonzero().flatten().tolist():
            rows = source_mask[:, s]
            pooled[rows] += weights[rows, s, None] * values[donor_row[rows], s]
        return self.coefficient[tissue_index] * pooled
