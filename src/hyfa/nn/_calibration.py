"""Per-target-tissue calibration of a Gaussian prediction's two parts, fitted on held-out donors."""

from __future__ import annotations

import torch
from torch import nn


class TargetCalibration(nn.Module):
    """``center + alpha_t (decoder - center) + beta_t offset``: shrink the decoder, rescale the gene-level skip.

    The decoder's donor-specific part (its deviation from the tissue's gene means ``center``) is
    scaled by ``alpha_t`` and the gene-level skip's offset by ``beta_t``, one pair per target
    tissue. Both start at 1 (the uncalibrated prediction, returned as is). With few training
    donors the decoder fits the training donors' targets much better than new donors' (see
    :meth:`hyfa.HYFA.calibrate`, which fits both factors on held-out donors); per-gene
    correlations are scale-free, so a decoder part that is mostly noise on new donors dilutes the
    skip's signal unless it is shrunk.

    Parameters
    ----------
    n_tissues
        Target tissues.
    """

    def __init__(self, n_tissues: int):
        super().__init__()
        self.register_buffer("decoder_weight", torch.ones(n_tissues))
        self.register_buffer("skip_weight", torch.ones(n_tissues))

    @property
    def is_identity(self) -> bool:
        """Whether every factor is 1 (the calibration changes nothing)."""
        return bool((self.decoder_weight == 1).all() and (self.skip_weight == 1).all())

    def reset(self) -> None:
        """Set every factor back to 1."""
        self.decoder_weight.fill_(1.0)
        self.skip_weight.fill_(1.0)

    def set(self, decoder_weight: torch.Tensor, skip_weight: torch.Tensor) -> None:
        """Set the ``(n_tissues,)`` factors."""
        self.decoder_weight.copy_(torch.as_tensor(decoder_weight, dtype=torch.float32))
        self.skip_weight.copy_(torch.as_tensor(skip_weight, dtype=torch.float32))

    def forward(
        self,
        decoder_mean: torch.Tensor,
        center: torch.Tensor,
        offset: torch.Tensor | None,
        tissue_index: torch.Tensor,
    ) -> torch.Tensor:
        """Return the calibrated ``(n_targets, n_genes)`` mean of targets of tissues ``tissue_index``.

        ``decoder_mean`` and ``center`` (the tissues' gene means) are ``(n_targets, n_genes)``;
        ``offset``, the gene-level skip's, likewise or ``None``.
        """
        alpha = self.decoder_weight[tissue_index, None]
        mean = center + alpha * (decoder_mean - center)
        if offset is not None:
            mean = mean + self.skip_weight[tissue_index, None] * offset
        return mean
