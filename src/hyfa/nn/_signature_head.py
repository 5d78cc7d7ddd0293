"""The cell-type signature head: what transfer learning adds to a trained bulk HYFA :cite:p:`Vinas2023`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._decoders import CountDecoder
from ._hyperedge_predictor import HyperedgePredictor


class CellTypeSignatureHead(nn.Module):
    """The parameters that transfer learning adds: cell-type embeddings, a 4-uniform hyperedge MLP, a ZINB decoder.

    For donor ``i``, tissue ``k`` and cell type ``q`` the MLP predicts ``e_hat_ij^(k,q)`` for every
    metagene ``j`` from ``[h_i^d; h_k^t; h_q^c; h_j^m]``; the decoder maps their concatenation to a
    zero-inflated negative binomial over the signature genes with mean
    ``n_cells * library * softmax(W_s e_hat + b_s)`` and a log-normal library size.

    Parameters
    ----------
    n_cell_types
        Cell types.
    n_genes
        Signature genes (need not be the bulk genes).
    n_donor_latent, n_tissue_latent, n_metagene_latent
        Embedding sizes of the pretrained bulk module.
    n_metagenes, n_factors
        Metagenes and features per metagene of the pretrained bulk module.
    n_cell_type_latent
        Cell-type embedding size.
    n_predictor_layers
        Hidden layers of the hyperedge MLP.
    n_hidden_decoder
        Width of the decoder's hidden layer.
    dropout_rate
        Dropout in the new layers.
    norm
        Normalization of hidden blocks: ``None``, ``"batch"`` or ``"layer"``.
    log_library_mean, log_library_sd
        Initial mean and sd of the log library size per cell.
    bulk_gene_index
        Count bulk models: the position of each signature gene among the bulk genes (-1 for genes
        the bulk model lacks), or ``None``. The signature logits of those genes are then offset by
        the bulk model's log proportions for the row's (donor, tissue), centred over the shared
        genes and scaled by a learnable weight per gene (initially 1): the cell type's signature
        is learned relative to the tissue's bulk profile, which the bulk model knows for every
        tissue, also those without single-cell data.
    """

    def __init__(
        self,
        n_cell_types: int,
        n_genes: int,
        n_donor_latent: int,
        n_tissue_latent: int,
        n_metagene_latent: int,
        n_metagenes: int,
        n_factors: int,
        n_cell_type_latent: int = 120,
        n_predictor_layers: int = 2,
        n_hidden_decoder: int = 128,
        dropout_rate: float = 0.174,
        norm: str | None = None,
        log_library_mean: float = 0.0,
        log_library_sd: float = 1.0,
        bulk_gene_index: Sequence[int] | None = None,
    ):
        super().__init__()
        if bulk_gene_index is None:
            self.bulk_gene_index, self.bulk_offset_weight = None, None
        else:
            index = torch.as_tensor(list(bulk_gene_index), dtype=torch.long)
            if index.shape != (n_genes,):
                raise ValueError(f"bulk_gene_index needs one entry per signature gene ({n_genes}).")
            self.register_buffer("bulk_gene_index", index, persistent=False)
            self.bulk_offset_weight = nn.Parameter(torch.ones(n_genes))
        self.cell_type_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(n_cell_types, n_cell_type_latent))
        )
        self.predictor = HyperedgePredictor(
            [n_donor_latent, n_tissue_latent, n_cell_type_latent],
            n_metagene_latent,
            n_factors,
            n_predictor_layers,
            dropout_rate,
            norm,
        )
        self.decoder = CountDecoder(
            n_metagenes * n_factors,
            n_genes,
            n_hidden_decoder,
            dropout_rate,
            zero_inflated=True,
            norm=norm,
            log_library_mean=log_library_mean,
            log_library_sd=log_library_sd,
        )

    def forward(
        self,
        donor: torch.Tensor,
        tissue: torch.Tensor,
        cell_type_index: torch.Tensor,
        metagene: torch.Tensor,
        bulk_proportions: torch.Tensor | None = None,
    ) -> dict:
        """Return the ZINB parameters (see :class:`hyfa.nn.CountDecoder`) of each (donor, tissue, cell type) row.

        ``donor`` and ``tissue`` are per-row embeddings, ``metagene`` the metagene embeddings;
        ``bulk_proportions`` ``(n_rows, n_bulk_genes)``, the bulk model's gene proportions of each
        row's (donor, tissue), is required with ``bulk_gene_index`` (see the class).
        """
        cell_type = self.cell_type_embedding[cell_type_index]
        return self.decoder(
            self.predictor([donor, tissue, cell_type], metagene), self._bulk_offset(bulk_proportions)
        )

    def _bulk_offset(self, bulk_proportions: torch.Tensor | None) -> torch.Tensor | None:
        """Return the logit offset of each signature gene from the bulk proportions, or ``None``."""
        if self.bulk_gene_index is None:
            return None
        if bulk_proportions is None:
            raise ValueError("This signature head offsets by the bulk profile: pass bulk_proportions.")
        shared = self.bulk_gene_index >= 0
        log_bulk = torch.log(bulk_proportions.clamp_min(1e-30))[:, self.bulk_gene_index.clamp_min(0)]
        log_bulk = torch.where(shared, log_bulk, torch.zeros_like(log_bulk))
        centred = log_bulk - log_bulk.sum(dim=-1, keepdim=True) / shared.sum().clamp_min(1)
        return torch.where(shared, centred, torch.zeros_like(centred)) * self.bulk_offset_weight
