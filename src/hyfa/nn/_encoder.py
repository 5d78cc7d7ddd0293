"""Hyperedge attributes from expression: e_ij^(k) = ReLU(W_j x_i^(k)) :cite:p:`Vinas2023`."""

from __future__ import annotations

import torch
from torch import nn

from ._kernels import linear_autocast


class MetageneEncoder(nn.Module):
    """Projects one sample's expression onto ``n_metagenes`` metagenes of ``n_factors`` features each.

    One weight matrix is shared by all tissues (equation (1) of the paper).

    Parameters
    ----------
    n_genes
        Genes per sample.
    n_metagenes
        Metagenes ``M``.
    n_factors
        Features per metagene (hyperedge attributes).
    activation
        ``"relu"`` as in the paper, or ``None`` for the authors' linear encoder.
    """

    def __init__(self, n_genes: int, n_metagenes: int, n_factors: int, activation: str | None = "relu"):
        super().__init__()
        if activation not in ("relu", None):
            raise ValueError(f"activation must be 'relu' or None, got {activation!r}.")
        self.n_metagenes = n_metagenes
        self.n_factors = n_factors
        self.linear = nn.Linear(n_genes, n_metagenes * n_factors)
        self.activation = nn.ReLU() if activation == "relu" else nn.Identity()
        self._low_precision_buffers = {}  # under autocast: the cast weight and its gradient, reused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return hyperedge attributes of shape ``(n_samples, n_metagenes, n_factors)`` for ``x`` ``(n_samples, n_genes)``.

        Under autocast (e.g. ``precision="bf16-mixed"``) the large weight is cast, and its
        gradient computed, into buffers kept between steps (:func:`~hyfa.nn._kernels.linear_autocast`).
        """
        relu = isinstance(self.activation, nn.ReLU)
        out = linear_autocast(x, self.linear.weight, self.linear.bias, relu, self._low_precision_buffers)
        return out.view(-1, self.n_metagenes, self.n_factors)
