"""The message-passing layer that refines donor embeddings from their hyperedges :cite:p:`Vinas2023`."""

from __future__ import annotations

import torch
from torch import nn

from ._mlp import (
    DROPPED_PRE_ACTIVATION,
    MLP,
    FactorizedInput,
    _compute_dtype,
    activation_block,
    dropout_mask,
    dropout_scale,
    pre_activation,
)


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


def tissue_attention(
    logits: torch.Tensor, edge_donor: torch.Tensor, edge_tissue: torch.Tensor, n_donors: int
) -> torch.Tensor:
    """Return ``segment_softmax(logits[edge_tissue], edge_donor, n_donors)`` from per-tissue logits.

    The logits ``(n_tissues, n_metagenes, n_heads)`` depend on the tissue and metagene only, so
    the softmax is assembled from per-tissue sums and a dense ``(n_donors, n_tissues)`` table of
    each donor's tissues: no scatter over hyperedges.

    Returns
    -------
    ``(n_pairs, n_metagenes, n_heads)`` weights; each donor's sum to one per head.
    """
    n_tissues, _, n_heads = logits.shape
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bfloat16 under autocast
    tissue_max = logits.detach().amax(dim=1)  # (T, H); softmax is invariant to these shifts
    tissue_weights = torch.exp(logits - tissue_max[:, None, :])  # (T, M, H)
    has_tissue = torch.zeros(n_donors, n_tissues, dtype=torch.bool, device=logits.device)
    has_tissue[edge_donor, edge_tissue] = True
    # each donor's largest logit per head (the smallest of all for a donor without hyperedges)
    donor_max = torch.where(has_tissue[..., None], tissue_max, tissue_max.amin(dim=0)).amax(dim=1)
    rescale = torch.exp(tissue_max[None] - donor_max[:, None, :]) * has_tissue[..., None]  # (D, T, H)
    donor_total = (rescale * tissue_weights.sum(dim=1)[None]).sum(dim=1)  # (D, H)
    pair_factor = rescale[edge_donor, edge_tissue] / donor_total[edge_donor]  # (P, H)
    return tissue_weights[edge_tissue] * pair_factor[:, None, :]


def pool_by_donor(per_pair: torch.Tensor, edge_donor: torch.Tensor, n_donors: int) -> torch.Tensor:
    """Return the sum of ``per_pair`` rows ``(n_pairs, ...)`` of each donor, ``(n_donors, ...)``."""
    pooled = per_pair.new_zeros(n_donors, *per_pair.shape[1:])
    return pooled.index_add(0, edge_donor, per_pair)


#: Hidden units of phi_e computed at a time by one thread (4 MB in float32): they stay in cache.
CHUNK_ELEMENTS = 2**20
#: ... and with several threads, whose operations each wait for all threads (16 MB in float32).
PARALLEL_CHUNK_ELEMENTS = 2**22


def pair_chunks(n_pairs: int, n_per_pair: int) -> list[slice]:
    """Return slices of consecutive pairs with about :data:`CHUNK_ELEMENTS` hidden units each.

    With several torch threads, chunks hold :data:`PARALLEL_CHUNK_ELEMENTS`: fewer, larger
    operations lose less time to threads waiting for each other on a busy machine.
    """
    n_elements = CHUNK_ELEMENTS if torch.get_num_threads() == 1 else PARALLEL_CHUNK_ELEMENTS
    size = max(1, n_elements // max(n_per_pair, 1))
    return [slice(start, min(start + size, n_pairs)) for start in range(0, n_pairs, size)]


class _PooledMessages(torch.autograd.Function):
    """``sum_{p of donor d} alpha[p]^T silu(pre[p])`` over hyperedges, a few pairs at a time.

    Only the pre-activations are kept for the backward pass, one tensor per chunk of pairs (so
    that memory is reused rather than freshly mapped); the hidden units and every gradient of
    their size exist one chunk at a time, and stay in cache.
    """

    @staticmethod
    def forward(ctx, edge_attr, weight, pair_bias, metagene_bias, alpha, edge_donor, n_donors, dropout_rate):
        dtype = _compute_dtype(edge_attr)
        edge_attr, weight, pair_bias, metagene_bias, alpha = (
            t.to(dtype) for t in (edge_attr, weight, pair_bias, metagene_bias, alpha)
        )
        n_pairs, n_metagenes, _ = edge_attr.shape
        n_hidden, n_heads = weight.shape[0], alpha.shape[-1]
        chunks = pair_chunks(n_pairs, n_metagenes * n_hidden)
        dropped = None
        if dropout_rate > 0:  # bytes, 1 where dropped: adding them is fastest
            dropped = dropout_mask((n_pairs, n_metagenes, n_hidden), dropout_rate, edge_attr.device).view(
                torch.uint8
            )
        pooled = torch.zeros(n_donors, n_heads, n_hidden, dtype=torch.float32, device=edge_attr.device)
        pre_chunks = []
        with torch.autocast(edge_attr.device.type, enabled=False):
            for chunk in chunks:
                shape = (chunk.stop - chunk.start, n_metagenes, n_hidden)
                pre = pre_activation(edge_attr[chunk], weight, pair_bias[chunk], metagene_bias, shape)
                if dropped is not None:  # moves dropped units to where SiLU and its gradient are zero
                    pre.add_(dropped[chunk], alpha=DROPPED_PRE_ACTIVATION)
                per_pair = torch.bmm(alpha[chunk].transpose(1, 2), nn.functional.silu(pre))  # (n, H, K)
                pooled.index_add_(0, edge_donor[chunk], per_pair.float())
                pre_chunks.append(pre)
        ctx.chunks = chunks
        ctx.save_for_backward(edge_attr, weight, alpha, edge_donor, *pre_chunks)
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled):
        edge_attr, weight, alpha, edge_donor, *pre_chunks = ctx.saved_tensors
        needs_edge, needs_weight, needs_pair, needs_metagene, needs_alpha = ctx.needs_input_grad[:5]
        grad_pooled = grad_pooled.to(alpha.dtype)
        (n_pairs, n_metagenes, n_factors), n_hidden, n_chunks = (
            edge_attr.shape,
            weight.shape[0],
            len(ctx.chunks),
        )
        grad_edge = torch.empty_like(edge_attr) if needs_edge else None
        grad_pair = edge_attr.new_empty(n_pairs, n_hidden) if needs_pair else None
        grad_alpha = torch.empty_like(alpha) if needs_alpha else None
        # the chunks' parts of the weight and metagene gradients, summed in float32 at the end
        weight_parts = weight.new_empty(n_chunks, *weight.shape) if needs_weight else None
        metagene_parts = edge_attr.new_empty(n_chunks, n_metagenes, n_hidden) if needs_metagene else None
        for i, (chunk, pre) in enumerate(zip(ctx.chunks, pre_chunks, strict=True)):
            grad_per_pair = grad_pooled[edge_donor[chunk]]  # (n, H, K)
            if needs_alpha:
                torch.bmm(nn.functional.silu(pre), grad_per_pair.transpose(1, 2), out=grad_alpha[chunk])
            grad_pre = torch.bmm(alpha[chunk], grad_per_pair)  # (n, M, K): the hidden units' gradient ...
            torch.ops.aten.silu_backward.grad_input(grad_pre, pre, grad_input=grad_pre)  # ... then pre's
            flat = grad_pre.view(-1, n_hidden)
            if needs_pair:
                torch.sum(grad_pre, dim=1, out=grad_pair[chunk])
            if needs_metagene:
                torch.sum(grad_pre, dim=0, out=metagene_parts[i])
            if needs_edge:
                torch.mm(flat, weight, out=grad_edge[chunk].view(-1, n_factors))
            if needs_weight:
                torch.mm(flat.T, edge_attr[chunk].view(-1, n_factors), out=weight_parts[i])
        grad_weight, grad_metagene = (
            None if parts is None else parts.sum(dim=0, dtype=torch.float32)
            for parts in (weight_parts, metagene_parts)
        )
        return grad_edge, grad_weight, grad_pair, grad_metagene, grad_alpha, None, None, None


def pooled_messages(
    edge_attr: torch.Tensor,
    weight: torch.Tensor,
    pair_bias: torch.Tensor,
    metagene_bias: torch.Tensor,
    alpha: torch.Tensor,
    edge_donor: torch.Tensor,
    n_donors: int,
    dropout_rate: float = 0.0,
) -> torch.Tensor:
    """Return each donor's attention-weighted sum of ``phi_e``'s hidden units, ``(n_donors, n_heads, n_hidden)``.

    ``pooled[d, h] = sum_{p: edge_donor[p] = d} sum_m alpha[p, m, h] * dropout(silu(pre[p, m]))``
    with ``pre[p, m] = edge_attr[p, m] @ weight.T + pair_bias[p] + metagene_bias[m]``; kept units
    are not rescaled (fold the dropout scale into ``alpha``).

    Parameters
    ----------
    edge_attr
        ``(n_pairs, n_metagenes, n_factors)`` hyperedge attributes.
    weight
        ``(n_hidden, n_factors)`` weight of the attributes.
    pair_bias
        ``(n_pairs, n_hidden)`` terms shared by the hyperedges of a (donor, tissue) pair.
    metagene_bias
        ``(n_metagenes, n_hidden)`` terms shared by the hyperedges of a metagene.
    alpha
        ``(n_pairs, n_metagenes, n_heads)`` attention weights.
    edge_donor
        ``(n_pairs,)`` donor of each pair.
    n_donors
        Donors.
    dropout_rate
        Dropout probability of the hidden units (``0`` for none).
    """
    return _PooledMessages.apply(
        edge_attr, weight, pair_bias, metagene_bias, alpha, edge_donor, n_donors, float(dropout_rate)
    )


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

    def _message_terms(self, h_donor, h_tissue, h_metagene, edge_donor, edge_tissue):
        """Return the terms of ``phi_e``'s first layer: ``(n_pairs, K)`` per pair, ``(M, K)`` per metagene."""
        donor_part, tissue_part, metagene_part, _ = self.message_input.parts
        per_pair = (
            donor_part(h_donor)[edge_donor] + tissue_part(h_tissue)[edge_tissue] + self.message_input.bias
        )
        return per_pair, metagene_part(h_metagene)

    def message_activations(self, h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue):
        """Return ``phi_e``'s hidden activations for every hyperedge, ``(n_pairs, n_metagenes, n_message)``."""
        per_pair, per_metagene = self._message_terms(h_donor, h_tissue, h_metagene, edge_donor, edge_tissue)
        edge_weight = self.message_input.parts[3].weight
        return self.message_hidden.forward_biases(per_pair, per_metagene, edge_attr, edge_weight)

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
        alpha = tissue_attention(
            self.attention_logits(h_tissue, h_metagene), edge_donor, edge_tissue, n_donors
        )
        nodes = (h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue)
        if isinstance(self.message_hidden[2], nn.Identity):
            pooled = self._pooled_messages(*nodes, alpha)
        else:  # normalization needs every hyperedge's hidden units at once
            per_pair = torch.bmm(alpha.transpose(1, 2), self.message_activations(*nodes))  # (P, H, K)
            pooled = pool_by_donor(per_pair, edge_donor, n_donors)
        weight = self.message_output.weight.view(self.n_heads, self.n_head_dim, -1)
        message = torch.einsum("bhk,hdk->bhd", pooled, weight).reshape(n_donors, -1)
        update = self.update(torch.cat([h_donor, message], dim=-1))
        return h_donor + update if self.residual else update

    def _pooled_messages(self, h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue, alpha):
        """Return each donor's ``alpha``-weighted sum of ``phi_e``'s hidden units, in chunks (:func:`pooled_messages`)."""
        per_pair, per_metagene = self._message_terms(h_donor, h_tissue, h_metagene, edge_donor, edge_tissue)
        rate = self.message_hidden.dropout_rate()
        alpha = alpha * dropout_scale(rate) if rate > 0 else alpha  # dropout's scale, on the few weights
        edge_weight = self.message_input.parts[3].weight
        return pooled_messages(
            edge_attr, edge_weight, per_pair, per_metagene, alpha, edge_donor, h_donor.shape[0], rate
        )
