"""Likelihood heads mapping predicted metagene attributes to genes :cite:p:`Vinas2023`."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Normal

from ._mlp import hidden_block


class GaussianDecoder(nn.Module):
    """``e_hat = MLP(concat_j e_hat_ij)``; mean ``W_mu e_hat + b``, sd ``softplus(W_sigma e_hat + b)``.

    Parameters
    ----------
    n_input
        Concatenated metagene attributes (``n_metagenes * n_factors``).
    n_genes
        Output genes.
    n_hidden
        Width of ``e_hat``.
    dropout_rate
        Dropout in the hidden block.
    min_scale
        Added to the standard deviation for numerical stability.
    norm
        Normalization of the hidden block: ``"layer"``, ``"batch"`` or ``None``.
    """

    def __init__(
        self,
        n_input: int,
        n_genes: int,
        n_hidden: int = 256,
        dropout_rate: float = 0.174,
        min_scale: float = 1e-4,
        norm: str | None = None,
    ):
        super().__init__()
        self.hidden = hidden_block(n_input, n_hidden, dropout_rate, norm)
        self.mean = nn.Linear(n_hidden, n_genes)
        self.scale = nn.Linear(n_hidden, n_genes)
        self.min_scale = min_scale

    def forward(self, metagene_attr: torch.Tensor) -> Normal:
        """Return the predictive Normal for ``(n_targets, n_metagenes, n_factors)`` attributes."""
        hidden = self.hidden(metagene_attr.flatten(start_dim=1))
        scale = nn.functional.softplus(self.scale(hidden)) + self.min_scale
        return Normal(self.mean(hidden), scale, validate_args=False)  # the loss reports non-finite values
