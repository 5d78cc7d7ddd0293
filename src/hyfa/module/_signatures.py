"""Cell-type signatures by transfer learning from a trained bulk HYFA module :cite:p:`Vinas2023`.

:class:`CellTypeSignatureModule` wraps the pretrained :class:`~hyfa.module.HYFAModule` (frozen by
default) and a :class:`~hyfa.nn.CellTypeSignatureHead`, as scvi-tools' ``DestVI.from_rna_model``
builds a module around a trained one. The bulk module knows nothing of signatures.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data

from hyfa.nn import CellTypeSignatureHead, count_distribution, predicted_library

from ._module import HYFAModule, log_library


class _SignatureKeys(NamedTuple):
    X_KEY: str = "X"
    DONOR_KEY: str = "donor_code"
    TISSUE_KEY: str = "tissue_code"
    CELL_TYPE_KEY: str = "cell_type_code"
    N_CELLS_KEY: str = "n_cells"
    LIBRARY_KEY: str = "library_size"


#: Keys under which registered signatures reach :class:`CellTypeSignatureModule`.
SIGNATURE_KEYS = _SignatureKeys()


def signature_distribution(params: dict, n_cells: torch.Tensor, library: torch.Tensor | None):
    """Return the ZINB of signatures summed over ``n_cells`` cells of mean library ``library`` (``None``: predicted)."""
    if library is None:
        library = predicted_library(params["log_library"])
    return count_distribution(params["proportions"], params["theta"], params["zi_logits"], n_cells * library)


class CellTypeSignatureModule(BaseModuleClass):
    """Cell-type signatures from a pretrained bulk module and a signature head.

    Each minibatch holds signatures (rows of donor, tissue, cell type). ``inference`` embeds each
    row's donor by message passing over the donor's bulk tissues (held here, for training, as
    ``bulk_x`` and ``bulk_sources``); ``generative`` gives the row's signature distribution from
    the donor embedding, the bulk tissue and metagene embeddings and the head; ``loss`` is the
    signature's ZINB negative log-likelihood per gene plus that of its observed log library size
    (divided by the number of genes), averaged over signatures.

    Parameters
    ----------
    bulk
        The trained bulk module.
    head
        The signature head, sized for ``bulk`` (see :meth:`from_bulk_module`).
    freeze_pretrained
        Keep the bulk layers in eval mode (no dropout) and, inside :meth:`training_scope`, every
        bulk parameter fixed; otherwise fine-tune them too.
    bulk_x
        Training only: ``(n_donors, n_tissues * n_genes)`` bulk expression of the donors with
        signatures (``donor_code`` indexes its rows).
    bulk_sources
        Training only: ``(n_donors, n_tissues)`` boolean, bulk tissues each donor's embedding uses.
    cat_covs, cont_covs
        Training only: those donors' registered covariates, or ``None``.
    """

    def __init__(
        self,
        bulk: HYFAModule,
        head: CellTypeSignatureHead,
        freeze_pretrained: bool = True,
        bulk_x: torch.Tensor | None = None,
        bulk_sources: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ):
        super().__init__()
        self.bulk = bulk
        self.head = head
        self.freeze_pretrained = freeze_pretrained
        self.register_buffer("bulk_x", bulk_x, persistent=False)
        self.register_buffer("bulk_sources", bulk_sources, persistent=False)
        self.register_buffer("cat_covs", cat_covs, persistent=False)
        self.register_buffer("cont_covs", cont_covs, persistent=False)

    @classmethod
    def from_bulk_module(
        cls, bulk: HYFAModule, head_kwargs: dict, freeze_pretrained: bool = True, **donor_inputs
    ) -> CellTypeSignatureModule:
        """Return a module with a new :class:`~hyfa.nn.CellTypeSignatureHead` sized for ``bulk``.

        ``head_kwargs`` are the head's own arguments (cell types, genes, layer sizes, ...); the
        embedding sizes come from ``bulk``. ``donor_inputs`` are the training-only arguments of
        the class.
        """
        head = CellTypeSignatureHead(
            n_donor_latent=bulk.n_donor_latent,
            n_tissue_latent=bulk.tissue_embedding.shape[1],
            n_metagene_latent=bulk.metagene_embedding.shape[1],
            n_metagenes=bulk.metagene_embedding.shape[0],
            n_factors=bulk.encoder.n_factors,
            **head_kwargs,
        ).to(bulk.tissue_embedding.device)
        return cls(bulk, head, freeze_pretrained=freeze_pretrained, **donor_inputs)

    def train(self, mode: bool = True):
        """Set training mode; with ``freeze_pretrained`` the bulk layers stay in eval mode."""
        super().train(mode)
        if self.freeze_pretrained:
            self.bulk.eval()
            self.head.train(mode)
        return self

    @contextmanager
    def training_scope(self) -> Iterator[CellTypeSignatureModule]:
        """Yield this module with the bulk parameters frozen as configured, restoring the bulk on exit.

        On exit, normal or not, every bulk parameter's ``requires_grad`` and the bulk's training
        mode are as before. If the block raises while fine-tuning (``freeze_pretrained=False``),
        the bulk parameters and buffers are also restored to their values on entry.
        """
        bulk = self.bulk
        flags = [(p, p.requires_grad) for p in bulk.parameters()]
        was_training = bulk.training
        saved = (
            None if self.freeze_pretrained else {k: v.detach().clone() for k, v in bulk.state_dict().items()}
        )
        try:
            for parameter, _ in flags:
                parameter.requires_grad_(not self.freeze_pretrained)
            yield self
        except BaseException:
            if saved is not None:
                bulk.load_state_dict(saved)
            raise
        finally:
            for parameter, flag in flags:
                parameter.requires_grad_(flag)
            bulk.train(was_training)

    # -- scvi-tools module protocol -------------------------------------------------------------
    def _get_inference_input(self, tensors: dict) -> dict:
        return {"donor_code": tensors[SIGNATURE_KEYS.DONOR_KEY].long().ravel()}

    @auto_move_data
    def inference(self, donor_code: torch.Tensor) -> dict:
        """Return the embedding of each row's donor from the donor's bulk tissues (``bulk_x``)."""
        if self.bulk_x is None:
            raise RuntimeError(
                "This signature module holds no bulk donors: build it with bulk_x for training."
            )
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
    def generative(self, donor, tissue_index, cell_type_index, n_cells, library=None) -> dict:
        """Return the signature distribution ``px`` and the predicted log library ``log_library``.

        ``library`` is each row's mean library size per cell; ``None`` uses the predicted one.
        """
        params = self.signature_parameters(donor, tissue_index, cell_type_index)
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

    # -- signature parameters -------------------------------------------------------------------
    def signature_parameters(
        self, donor: torch.Tensor, tissue_index: torch.Tensor, cell_type_index: torch.Tensor
    ) -> dict:
        """Return the head's ZINB parameters of each (donor embedding, tissue, cell type) row.

        With the head's bulk offset, the bulk module's predicted gene proportions of the row's
        (donor, tissue) enter without gradient, from its layers in eval mode (no dropout).
        """
        tissue = self.bulk.tissue_embedding[tissue_index]
        return self.head(
            donor,
            tissue,
            cell_type_index,
            self.bulk.metagene_embedding,
            bulk_proportions=self._bulk_proportions(donor, tissue_index),
        )

    def _bulk_proportions(self, donor: torch.Tensor, tissue_index: torch.Tensor) -> torch.Tensor | None:
        """Return the bulk module's gene proportions of each (donor, tissue) row, or ``None`` without offset."""
        if self.head.bulk_gene_index is None:
            return None
        layers = (self.bulk.predictor, self.bulk.decoder)
        modes = [layer.training for layer in layers]
        for layer in layers:
            layer.eval()
        try:
            with torch.no_grad():
                return self.bulk.generative(donor, tissue_index)["proportions"]
        finally:
            for layer, mode in zip(layers, modes, strict=True):
                layer.train(mode)
