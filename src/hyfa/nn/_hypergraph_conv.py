"""The message-passing layer that refines donor embeddings from their hyperedges :cite:p:`Vinas2023`."""

from __future__ import annotations

import torch
from torch import nn

from ._mlp import MLP, FactorizedInput, activation_block


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` ``(n_pairs, n_metagenes, n_heads)`` over all entries of each segment, per head.

    Row ``p`` belongs to segment ``segment[p]`` (its donor): each head's weights sum to one over
    the donor's ``|T(i)| x M`` incoming hyperedges.
    """
    n_heads = logits.shape[-1]
    pair_max = logits.detach().amax(dim=1)
    seg_max = torch.full((n_segments, n_heads), -torch.inf, dtype=logits.dtype, device=logits.device)
    seg_max = seg_max.scatter_reduce(0, segment[:, None].expand(-1, n_heads), pair_max, reduce="amax")
    weights = torch.exp(logits - seg_max[segment][:, None, :])
    total = torch.zeros(n_segments, n_heads, dtype=logits.dtype, device=logits.device)
    total = total.index_add(0, segment, weights.sum(dim=1))
    return weights / total[segment][:, None, :]


class HypergraphAttentionConv(nn.Module):
    """One layer of hypergraph message passing with multi-head attention aggregation.

    For donor ``i`` with source tissues ``T(i)``:
    ``m_ijk = phi_e([h_i; h_j^m; h_k^t; e_ij^(k)])``, ``m_i = sum_{j,k} alpha_jk m_ijk`` with the
    attention ``alpha_jk`` from ``[h_j^m; h_k^t]`` normalized per head over all ``|T(i)| x M``
    hyperedges of the donor, and ``h_i' = h_i + phi_h([h_i; m_i])`` (``residual=True``) or
    ``phi_h([h_i; m_i])`` (the paper's equation).

    ``phi_e`` ends in a bias-free linear layer, so it is applied after the attention-weighted sum
    of its hidden activations, head by head: the same function, without one large matrix
    product per hyperedge.

    Parameters
    ----------
    n_donor, n_tissue, n_metagene
        Embedding sizes of donor, tissue and metagene nodes.
    n_factors
        Hyperedge attribute size.
    n_heads
        Attention heads.
    n_head_dim
        Message features per head (messages have ``n_heads * n_head_dim`` features).
    dropout_rate
        Dropout in ``phi_e`` and ``phi_h``.
    residual
        Whether the update adds ``phi_h`` to the donor embedding.
    attention_slope
        Negative slope of the attention's LeakyReLU.
    norm
        Normalization in ``phi_e`` and ``phi_h``: ``"layer"``, ``"batch"`` or ``None``.
    """

    def __init__(
        self,
        n_donor: int,
        n_tissue: int,
        n_metagene: int,
        n_factors: int,
        n_heads: int = 28,
        n_head_dim: int = 28,
        dropout_rate: float = 0.174,
        residual: bool = True,
        attention_slope: float = 0.1,
        norm: str | None = None,
    ):
        super().__init__()
        n_message = n_heads * n_head_dim
        self.n_heads = n_heads
        self.n_head_dim = n_head_dim
        self.residual = residual
        self.message_input = FactorizedInput([n_donor, n_tissue, n_metagene, n_factors], n_message)
        self.message_hidden = activation_block(n_message, dropout_rate, norm)
        self.message_output = nn.Linear(n_message, n_message, bias=False)
        n_pair = n_tissue + n_metagene
        self.attention = nn.Sequential(
            nn.Linear(n_pair, n_pair), nn.LeakyReLU(attention_slope), nn.Linear(n_pair, n_heads)
        )
        self.update = MLP(n_donor + n_message, [n_donor], n_donor, dropout_rate, norm=norm)

    def attention_logits(self, h_tissue: torch.Tensor, h_metagene: torch.Tensor) -> torch.Tensor:
        """Return attention logits of shape ``(n_tissues, n_metagenes, n_heads)``."""
        n_tissues, n_metagenes = h_tissue.shape[0], h_metagene.shape[0]
        pairs = torch.cat(
            [
                h_tissue[:, None, :].expand(-1, n_metagenes, -1),
                h_metagene[None, :, :].expand(n_tissues, -1, -1),
            ],
            dim=-1,
        )
        return self.attention(pairs)

    def message_activations(self, h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue):
        """Return ``phi_e``'s hidden activations for every hyperedge, ``(n_pairs, n_metagenes, n_message)``."""
        donor, tissue, metagene, edge = self.message_input.project(h_donor, h_tissue, h_metagene, edge_attr)
        pre = (
            edge
            + (donor[edge_donor] + tissue[edge_tissue] + self.message_input.bias)[:, None, :]
            + metagene[None]
        )
        n_pairs, n_metagenes, n_message = pre.shape
        return self.message_hidden(pre.reshape(-1, n_message)).reshape(n_pairs, n_metagenes, n_message)

    def forward(
        self,
        h_donor: torch.Tensor,
        h_tissue: torch.Tensor,
        h_metagene: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_donor: torch.Tensor,
        edge_tissue: torch.Tensor,
    ) -> torch.Tensor:
        """Return refined donor embeddings.

        Parameters
        ----------
        h_donor
            ``(n_donors, n_donor)`` donor embeddings.
        h_tissue
            ``(n_tissues, n_tissue)`` tissue embeddings.
        h_metagene
            ``(n_metagenes, n_metagene)`` metagene embeddings.
        edge_attr
            ``(n_pairs, n_metagenes, n_factors)`` attributes of the hyperedges of each observed
            (donor, tissue) pair.
        edge_donor, edge_tissue
            ``(n_pairs,)`` donor row and tissue index of each pair.
        """
        n_donors = h_donor.shape[0]
        hidden = self.message_activations(h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue)
        alpha = segment_softmax(
            self.attention_logits(h_tissue, h_metagene)[edge_tissue], edge_donor, n_donors
        )
        per_pair = torch.einsum("pmh,pmk->phk", alpha, hidden)
        pooled = torch.zeros(n_donors, *per_pair.shape[1:], dtype=per_pair.dtype, device=per_pair.device)
        pooled = pooled.index_add(0, edge_donor, per_pair)
        weight = self.message_output.weight.view(self.n_heads, self.n_head_dim, -1)
        message = torch.einsum("bhk,hdk->bhd", pooled, weight).reshape(n_donors, -1)
        update = self.update(torch.cat([h_donor, message], dim=-1))
        return h_donor + update if self.residual else update
