"""The message-passing layer that refines donor embeddings from their hyperedges :cite:p:`Vinas2023`."""

from __future__ import annotations

import torch
from torch import nn

from ._dropout import dropout_scale
from ._kernels import pooled_messages
from ._mlp import MLP, FactorizedInput, activation_block


def attention_factors(
    logits: torch.Tensor, edge_donor: torch.Tensor, edge_tissue: torch.Tensor, n_donors: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the two factors of :func:`tissue_attention`: per-tissue weights and per-pair normalizers.

    ``alpha[p, m, h] = weights[edge_tissue[p], m, h] * pair_factor[p, h]``: the weights
    ``(n_tissues, n_metagenes, n_heads)`` depend on the logits only; ``pair_factor`` ``(n_pairs,
    n_heads)`` makes each donor's weights sum to one per head.
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
    return tissue_weights, rescale[edge_donor, edge_tissue] / donor_total[edge_donor]


def tissue_attention(
    logits: torch.Tensor, edge_donor: torch.Tensor, edge_tissue: torch.Tensor, n_donors: int
) -> torch.Tensor:
    """Return the softmax of ``logits[edge_tissue]`` over all hyperedges of each donor, per head.

    The logits ``(n_tissues, n_metagenes, n_heads)`` depend on the tissue and metagene only, so
    the softmax is assembled from per-tissue sums and a dense ``(n_donors, n_tissues)`` table of
    each donor's tissues: no scatter over hyperedges (see :func:`attention_factors`).

    Returns
    -------
    ``(n_pairs, n_metagenes, n_heads)`` weights; each donor's sum to one per head.
    """
    tissue_weights, pair_factor = attention_factors(logits, edge_donor, edge_tissue, n_donors)
    return tissue_weights[edge_tissue] * pair_factor[:, None, :]


def pool_by_donor(per_pair: torch.Tensor, edge_donor: torch.Tensor, n_donors: int) -> torch.Tensor:
    """Return the sum of ``per_pair`` rows ``(n_pairs, ...)`` of each donor, ``(n_donors, ...)``."""
    pooled = per_pair.new_zeros(n_donors, *per_pair.shape[1:])
    return pooled.index_add(0, edge_donor, per_pair)


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
        return self._update(h_donor, pooled)

    def _update(self, h_donor: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Return the refined embeddings from the pooled hidden units ``(n_donors, n_heads, n_message)``."""
        weight = self.message_output.weight.view(self.n_heads, self.n_head_dim, -1)
        message = torch.einsum("bhk,hdk->bhd", pooled, weight).reshape(h_donor.shape[0], -1)
        update = self.update(torch.cat([h_donor, message], dim=-1))
        return h_donor + update if self.residual else update

    # -- many source sets of the same donors (inference) -----------------------------------------
    @property
    def shares_sample_messages(self) -> bool:
        """Whether :meth:`sample_messages` applies: eval mode and no normalization in ``phi_e``."""
        return not self.training and isinstance(self.message_hidden[2], nn.Identity)

    def sample_messages(self, h_donor, h_tissue, h_metagene, sample_attr, sample_donor, sample_tissue):
        """Return each sample's hidden units of ``phi_e`` summed over metagenes with tissue-level weights.

        ``(n_samples, n_heads, n_message)``: ``sum_m weights[t, m] * silu(pre[s, m])`` with the
        weights of :func:`attention_factors`. Every source set of a donor drawn from these samples,
        with the donor's embedding ``h_donor``, pools them with set-level factors
        (:meth:`forward_sample_messages`), so the hidden units are computed once per sample, not
        once per set. Eval mode only (see :attr:`shares_sample_messages`).
        """
        logits = self.attention_logits(h_tissue, h_metagene)
        weights, _ = attention_factors(logits, sample_donor, sample_tissue, h_donor.shape[0])
        per_pair, per_metagene = self._message_terms(
            h_donor, h_tissue, h_metagene, sample_donor, sample_tissue
        )
        n_samples = len(sample_donor)
        index = torch.arange(n_samples, device=sample_attr.device)
        edge_weight = self.message_input.parts[3].weight
        return pooled_messages(
            sample_attr, edge_weight, per_pair, per_metagene, weights[sample_tissue], index, n_samples
        )

    def forward_sample_messages(
        self,
        h_set: torch.Tensor,
        h_tissue: torch.Tensor,
        h_metagene: torch.Tensor,
        messages: torch.Tensor,
        sample_tissue: torch.Tensor,
        edge_set: torch.Tensor,
        edge_sample: torch.Tensor,
        max_edges: int = 2048,
    ) -> torch.Tensor:
        """Return refined embeddings of source sets from :meth:`sample_messages` of their samples.

        Set ``q`` holds samples ``edge_sample[edge_set == q]``, all of one donor whose embedding
        ``h_set[q]`` is the one the messages were computed with. Equals :meth:`forward` over the
        set's hyperedges (up to float rounding).
        """
        logits = self.attention_logits(h_tissue, h_metagene)
        _, factor = attention_factors(logits, edge_set, sample_tissue[edge_sample], h_set.shape[0])
        pooled = messages.new_zeros(h_set.shape[0], *messages.shape[1:])
        for start in range(0, len(edge_set), max_edges):
            chunk = slice(start, start + max_edges)
            pooled.index_add_(0, edge_set[chunk], factor[chunk, :, None] * messages[edge_sample[chunk]])
        return self._update(h_set, pooled)

    def _pooled_messages(self, h_donor, h_tissue, h_metagene, edge_attr, edge_donor, edge_tissue, alpha):
        """Return each donor's ``alpha``-weighted sum of ``phi_e``'s hidden units, in chunks (:func:`pooled_messages`)."""
        per_pair, per_metagene = self._message_terms(h_donor, h_tissue, h_metagene, edge_donor, edge_tissue)
        rate = self.message_hidden.dropout_rate()
        alpha = alpha * dropout_scale(rate) if rate > 0 else alpha  # dropout's scale, on the few weights
        edge_weight = self.message_input.parts[3].weight
        return pooled_messages(
            edge_attr, edge_weight, per_pair, per_metagene, alpha, edge_donor, h_donor.shape[0], rate
        )
