"""Target hyperedge attributes from node embeddings :cite:p:`Vinas2023`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._mlp import MLP, FactorizedInput, activation_block, pad_to, padded_width


class HyperedgePredictor(nn.Module):
    """Predicts ``e_hat_ij`` for every metagene ``j`` of target hyperedges with one shared MLP.

    The MLP reads ``[h_i^d; h_k^t; ...; h_j^m]``: per-target node embeddings (donor, target tissue
    and, for signatures, cell type) and each metagene embedding. Its hidden widths equal its input
    width, as in the authors' implementation.

    Parameters
    ----------
    n_target_inputs
        Sizes of the per-target embeddings, in order (e.g. donor, tissue).
    n_metagene
        Metagene embedding size.
    n_factors
        Hyperedge attribute size (the output).
    n_layers
        Hidden layers.
    dropout_rate
        Dropout after each hidden activation.
    norm
        Normalization of hidden blocks: ``"layer"``, ``"batch"`` or ``None``.
    """

    def __init__(
        self,
        n_target_inputs: Sequence[int],
        n_metagene: int,
        n_factors: int,
        n_layers: int = 2,
        dropout_rate: float = 0.174,
        norm: str | None = None,
    ):
        super().__init__()
        n_input = sum(n_target_inputs) + n_metagene
        self.first = FactorizedInput([*n_target_inputs, n_metagene], n_input)
        self.first_hidden = activation_block(n_input, dropout_rate, norm)
        self.rest = MLP(n_input, [n_input] * (n_layers - 1), n_factors, dropout_rate, norm=norm)

    def forward(self, target_inputs: Sequence[torch.Tensor], h_metagene: torch.Tensor) -> torch.Tensor:
        """Return ``(n_targets, n_metagenes, n_factors)`` attributes from ``(n_targets, n_i)`` inputs."""
        *per_target, metagene = self.first.project(*target_inputs, h_metagene)
        n_targets, n_metagenes = per_target[0].shape[0], metagene.shape[0]
        width = padded_width(metagene.shape[-1], n_targets * n_metagenes, self.first_hidden[2])
        target = pad_to(sum(per_target) + self.first.bias, width)
        hidden, scale = self.first_hidden.forward_unscaled(target, pad_to(metagene, width))  # (T, M, width)
        return self.rest(hidden.reshape(n_targets * n_metagenes, -1), input_scale=scale).view(
            n_targets, n_metagenes, -1
        )
