"""Cell-type signatures by transfer learning from a trained bulk HYFA module :cite:p:`Vinas2023`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn

from hyfa.nn import CountDecoder, HyperedgePredictor, count_distribution, predicted_library

from ._module import HYFAModule, log_library


class _SignatureKeys(NamedTuple):
    X_KEY: str = "X"
    DONOR_KEY: str = "donor_code"
    TISSUE_KEY: str = "tissue_code"
    CELL_TYPE_KEY: str = "cell_type_code"
    N_CELLS_KEY: str = "n_cells"
    LIBRARY_KEY: str = "library_size"


#: Keys under which registered signatures reach :class:`SignatureTrainingModule`.
SIGNATURE_KEYS = _SignatureKeys()


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


def signature_distribution(params: dict, n_cells: torch.Tensor, library: torch.Tensor | None):
    """Return the ZINB of signatures summed over ``n_cells`` cells of mean library ``library`` (``None``: predicted)."""
    if library is None:
        library = predicted_library(params["log_library"])
    return count_distribution(params["proportions"], params["theta"], params["zi_logits"], n_cells * library)


class SignatureTrainingModule(BaseModuleClass):
    """Trains a :class:`CellTypeSignatureHead` attached to a pretrained :class:`~hyfa.module.HYFAModule`.

    Each minibatch holds signatures (rows of donor, tissue, cell type). Donor embeddings come from
    message passing over each donor's bulk tissues, held here for the donors with signatures;
    the loss is the signature's ZINB negative log-likelihood per gene plus that of its observed
    log library size (divided by the number of genes), averaged over signatures.

    Parameters
    ----------
    bulk
        The trained bulk module, with ``signature_head`` attached.
    bulk_x
        ``(n_donors, n_tissues * n_genes)`` bulk expression of the donors with signatures.
    bulk_sources
        ``(n_donors, n_tissues)`` boolean: bulk tissues each donor's embedding uses.
    cat_covs, cont_covs
        Those donors' registered covariates, or ``None``.
    freeze_pretrained
        Keep every pretrained parameter fixed, and the pretrained layers in eval mode (no
        dropout); otherwise fine-tune them too.
    """

    def __init__(
        self,
        bulk: HYFAModule,
        bulk_x: torch.Tensor,
        bulk_sources: torch.Tensor,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        freeze_pretrained: bool = True,
    ):
        super().__init__()
        if getattr(bulk, "signature_head", None) is None:
            raise ValueError(
                "Attach a signature head to the bulk module first (HYFAModule.attach_signature_head)."
            )
        self.bulk = bulk
        self.freeze_pretrained = freeze_pretrained
        self.register_buffer("bulk_x", bulk_x, persistent=False)
        self.register_buffer("bulk_sources", bulk_sources, persistent=False)
        self.register_buffer("cat_covs", cat_covs, persistent=False)
        self.register_buffer("cont_covs", cont_covs, persistent=False)
        for name, parameter in bulk.named_parameters():
            if not name.startswith("signature_head."):
                parameter.requires_grad_(not freeze_pretrained)

    def train(self, mode: bool = True):
        """Set training mode; with ``freeze_pretrained`` the pretrained layers stay in eval mode."""
        super().train(mode)
        if self.freeze_pretrained:
            self.bulk.eval()
            self.bulk.signature_head.train(mode)
        return self

    def _get_inference_input(self, tensors: dict) -> dict:
        return {"donor_code": tensors[SIGNATURE_KEYS.DONOR_KEY].long().ravel()}

    @auto_move_data
    def inference(self, donor_code: torch.Tensor) -> dict:
        """Return the embedding of each row's donor from the donor's bulk tissues."""
        unique, row = torch.unique(donor_code, return_inverse=True)
        covs = {
            "cat_covs": None if self.cat_covs is None else self.cat_covs[unique],
            "cont_covs": None if self.cont_covs is None else self.cont_covs[unique],
        }
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_pretrained):
            donor = self.bulk.inference(x=self.bulk_x[unique], source_mask=self.bulk_sources[unique], **covs)
        return {"donor": donor["donor"][row]}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {
            "donor": inference_outputs["donor"],
            "tissue_index": tensors[SIGNATURE_KEYS.TISSUE_KEY].long().ravel(),
            "cell_type_index": tensors[SIGNATURE_KEYS.CELL_TYPE_KEY].long().ravel(),
            "n_cells": tensors[SIGNATURE_KEYS.N_CELLS_KEY].ravel(),
            "library": tensors[SIGNATURE_KEYS.LIBRARY_KEY].ravel(),
        }

    @auto_move_data
    def generative(self, donor, tissue_index, cell_type_index, n_cells, library) -> dict:
        """Return the signature distribution ``px`` and the predicted log library ``log_library``."""
        params = self.bulk.signature_parameters(donor, tissue_index, cell_type_index)
        return {"px": signature_distribution(params, n_cells, library), "log_library": params["log_library"]}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Return the mean over signatures of the ZINB negative log-likelihood per gene plus the library term."""
        x = tensors[SIGNATURE_KEYS.X_KEY]
        nll = -generative_outputs["px"].log_prob(x).mean(dim=-1)
        library = tensors[SIGNATURE_KEYS.LIBRARY_KEY].ravel()
        nll = nll - generative_outputs["log_library"].log_prob(log_library(library)) / x.shape[-1]
        loss = nll.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                "The cell-type signature loss became NaN or infinite; lower the learning rate (lr=...)."
            )
        return LossOutput(loss=loss, reconstruction_loss=nll, n_obs_minibatch=x.shape[0])
