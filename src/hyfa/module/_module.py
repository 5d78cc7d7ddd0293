"""The HYFA torch module: donor hypergraph -> donor embeddings -> target hyperedges -> genes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.module.base import BaseModuleClass, LossOutput, auto_move_data
from torch import nn
from torch.distributions import Normal

from hyfa._constants import REGISTRY_KEYS
from hyfa._docs import architecture, doc_params, likelihood, pseudo_masks
from hyfa.nn import (
    CountDecoder,
    GaussianDecoder,
    GeneSkip,
    HyperedgePredictor,
    HypergraphAttentionConv,
    MetageneEncoder,
    TargetCalibration,
    count_distribution,
    predicted_library,
)

from ._masks import fixed_split, random_split
from ._prediction import PredictionMixin

#: Values of ``gene_likelihood``.
GENE_LIKELIHOODS = ("normal", "nb", "zinb")
#: Counts per sample that count-likelihood inputs are scaled to before ``log1p`` in the encoder.
ENCODER_TARGET_SUM = 1e4


def log_library(library: torch.Tensor) -> torch.Tensor:
    """Return ``log(max(library, 1))``, the observed log library size the library model fits."""
    return torch.log(library.clamp(min=1.0))


@doc_params(architecture=architecture, likelihood=likelihood, pseudo_masks=pseudo_masks)
class HYFAModule(PredictionMixin, BaseModuleClass):
    """Hypergraph factorization :cite:p:`Vinas2023` as an scvi-tools module.

    ``inference`` embeds donors by message passing over the (donor, tissue, metagene)
    hyperedges of their source tissues; ``generative`` predicts the metagene attributes of
    target (donor, tissue) hyperedges and decodes them to a distribution over genes; ``loss`` is
    the mean negative log-likelihood over each donor's targets, averaged over donors.

    With a count likelihood (``"nb"``, ``"zinb"``) the encoder reads ``log1p`` of each sample's
    counts scaled to 10,000 in total, standardized per tissue and gene; the likelihood of target counts uses their observed
    library size (the total over the modelled genes), and a log-normal library-size model,
    fitted to the observed totals, predicts it where it is not observed.

    Parameters
    ----------
    n_genes
        Genes per tissue.
    n_tissues
        Tissues.
    n_cats_per_cov
        Categories of each categorical donor covariate.
    n_continuous_cov
        Continuous donor covariates.
    {architecture}
    {likelihood}
    log_library_mean, log_library_sd
        Count likelihoods: the initial mean and standard deviation of the log library size.
    {pseudo_masks}
    """

    def __init__(
        self,
        n_genes: int,
        n_tissues: int,
        n_cats_per_cov: Sequence[int] | None = None,
        n_continuous_cov: int = 0,
        n_metagenes: int = 50,
        n_factors: int = 98,
        n_donor_latent: int = 71,
        n_tissue_latent: int = 120,
        n_metagene_latent: int = 48,
        n_heads: int = 28,
        n_head_dim: int = 28,
        n_graph_layers: int = 2,
        n_predictor_layers: int = 2,
        n_hidden_decoder: int = 256,
        dropout_rate: float = 0.174,
        residual_update: bool = True,
        encoder_activation: str | None = "relu",
        norm: str | None = None,
        gene_skip: bool = True,
        gene_likelihood: str = "normal",
        log_library_mean: float = 0.0,
        log_library_sd: float = 1.0,
        source_count_exponent: float = 3.0,
        validation_seed: int = 0,
    ):
        super().__init__()
        if gene_likelihood not in GENE_LIKELIHOODS:
            raise ValueError(f"gene_likelihood must be one of {GENE_LIKELIHOODS}, got {gene_likelihood!r}.")
        self.gene_likelihood = gene_likelihood
        self.register_buffer("input_loc", torch.zeros(n_tissues, n_genes))
        self.register_buffer("input_scale", torch.ones(n_tissues, n_genes))
        self.n_genes = n_genes
        self.n_tissues = n_tissues
        self.n_cats_per_cov = list(n_cats_per_cov or [])
        self.n_continuous_cov = n_continuous_cov
        self.n_donor_latent = n_donor_latent
        #: The architecture a model built on this one (e.g. cell-type signatures) reuses.
        self.n_predictor_layers, self.dropout_rate, self.norm = n_predictor_layers, dropout_rate, norm
        self.validation_seed = validation_seed
        self.source_count_exponent = source_count_exponent
        n_covariate_dims = sum(self.n_cats_per_cov) + n_continuous_cov
        if n_covariate_dims > n_donor_latent:
            raise ValueError(
                f"Donor covariates take {n_covariate_dims} dimensions (one-hot categories + continuous) "
                f"but n_donor_latent is {n_donor_latent}; raise n_donor_latent."
            )
        self.tissue_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(n_tissues, n_tissue_latent)))
        self.metagene_embedding = nn.Parameter(
            nn.init.xavier_uniform_(torch.empty(n_metagenes, n_metagene_latent))
        )
        self.encoder = MetageneEncoder(n_genes, n_metagenes, n_factors, activation=encoder_activation)
        self.graph_layers = nn.ModuleList(
            HypergraphAttentionConv(
                n_donor_latent,
                n_tissue_latent,
                n_metagene_latent,
                n_factors,
                n_heads=n_heads,
                n_head_dim=n_head_dim,
                dropout_rate=dropout_rate,
                residual=residual_update,
                norm=norm,
            )
            for _ in range(n_graph_layers)
        )
        self.predictor = HyperedgePredictor(
            [n_donor_latent, n_tissue_latent],
            n_metagene_latent,
            n_factors,
            n_predictor_layers,
            dropout_rate,
            norm,
        )
        if gene_likelihood == "normal":
            self.decoder = GaussianDecoder(
                n_metagenes * n_factors, n_genes, n_hidden_decoder, dropout_rate, norm=norm
            )
        else:
            self.decoder = CountDecoder(
                n_metagenes * n_factors,
                n_genes,
                n_hidden_decoder,
                dropout_rate,
                zero_inflated=gene_likelihood == "zinb",
                norm=norm,
                log_library_mean=log_library_mean,
                log_library_sd=log_library_sd,
            )
        #: The gene-level skip connection (``None`` without ``gene_skip``).
        self.skip = GeneSkip(n_tissues, n_genes) if gene_skip else None
        #: Gaussian means: validation-fitted shrinkage of the decoder and scale of the skip (identity until fitted).
        self.calibration = TargetCalibration(n_tissues)
        self._register_load_state_dict_pre_hook(_fill_missing, with_module=True)

    @property
    def counts(self) -> bool:
        """Whether the likelihood models raw counts."""
        return self.gene_likelihood != "normal"

    def encoder_input(self, x: torch.Tensor, tissue_index: torch.Tensor) -> torch.Tensor:
        """Return what the metagene encoder reads of ``(n_samples, n_genes)`` expression of tissues ``tissue_index``.

        Normalized expression as is; counts as ``log1p`` of each sample scaled to 10,000 counts,
        standardized per tissue and gene with :meth:`set_input_standardization`'s statistics.
        """
        if not self.counts:
            return x
        return self.standardize(x, tissue_index)

    def standardize(self, x: torch.Tensor, tissue_index: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Return expression ``(..., n_genes)`` of tissues ``tissue_index`` standardized per tissue and gene.

        Counts are first ``log1p`` of each sample scaled to 10,000 counts. With the default
        ``tissue_index``, ``x`` is ``(n_donors, n_tissues, n_genes)``.
        """
        if self.counts:
            total = x.sum(dim=-1, keepdim=True).clamp(min=1.0)
            x = torch.log1p(x * (ENCODER_TARGET_SUM / total))
        return (x - self.input_loc[tissue_index]) / self.input_scale[tissue_index]

    def skip_values(self, x: torch.Tensor) -> torch.Tensor | None:
        """Return the ``(n_donors, n_tissues, n_genes)`` standardized stacked ``x`` the skip reads (``None`` without it)."""
        if self.skip is None:
            return None
        return self.standardize(x.view(x.shape[0], self.n_tissues, self.n_genes))

    def gene_offset(
        self,
        x: torch.Tensor,
        donor_row: torch.Tensor,
        source_mask: torch.Tensor,
        tissue_index: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Return the gene-level skip connection's ``(n_pairs, n_genes)`` offset of target pairs (``None`` without it).

        Parameters
        ----------
        x
            ``(n_donors, n_tissues * n_genes)`` stacked expression.
        donor_row
            ``(n_pairs,)`` donor (row of ``x``) of each target pair.
        source_mask
            Boolean ``(n_pairs, n_tissues)``: the sources each pair is predicted from.
        tissue_index
            ``(n_pairs,)`` target tissue of each pair.
        values
            :meth:`skip_values` of ``x``, when already computed (e.g. once per minibatch for many targets).
        """
        if self.skip is None:
            return None
        if values is None:
            values = self.skip_values(x)
        return self.skip(values, donor_row, source_mask, tissue_index)

    def set_input_standardization(self, loc: torch.Tensor, scale: torch.Tensor) -> None:
        """Set the per-(tissue, gene) mean and sd of the standardized input (saved with the module).

        Of ``log1p`` scaled counts with a count likelihood, of the expression otherwise.
        """
        self.input_loc.copy_(torch.as_tensor(loc, dtype=torch.float32))
        self.input_scale.copy_(torch.as_tensor(scale, dtype=torch.float32).clamp(min=1e-3))

    # -- the stacked layout -------------------------------------------------------------------
    def samples(self, x: torch.Tensor, donor_row: torch.Tensor, tissue_index: torch.Tensor) -> torch.Tensor:
        """Return the ``(n_pairs, n_genes)`` expression of (donor row, tissue) pairs of a stacked minibatch.

        ``x`` is ``(n_donors, n_tissues * n_genes)``: block ``k`` of columns holds tissue ``k``.
        """
        return x.view(x.shape[0], self.n_tissues, self.n_genes)[donor_row, tissue_index]

    def encode(self, x: torch.Tensor, donor_row: torch.Tensor, tissue_index: torch.Tensor) -> torch.Tensor:
        """Return the ``(n_pairs, n_metagenes, n_factors)`` hyperedge attributes of (donor row, tissue) samples of ``x``."""
        return self.encoder(self.encoder_input(self.samples(x, donor_row, tissue_index), tissue_index))

    def propagate(
        self, h: torch.Tensor, edge_attr: torch.Tensor, edge_donor: torch.Tensor, edge_tissue: torch.Tensor
    ) -> torch.Tensor:
        """Return donor embeddings ``h`` refined by every graph layer over the hyperedges of the given samples."""
        for layer in self.graph_layers:
            h = layer(h, self.tissue_embedding, self.metagene_embedding, edge_attr, edge_donor, edge_tissue)
        return h

    # -- donor nodes ---------------------------------------------------------------------------
    def initial_donor(self, n_donors: int, cat_covs=None, cont_covs=None) -> torch.Tensor:
        """Return initial donor features: covariates in the first dimensions, ones elsewhere."""
        parts = []
        if cat_covs is not None and self.n_cats_per_cov:
            codes = cat_covs.long()
            parts += [
                nn.functional.one_hot(codes[:, i], n).float() for i, n in enumerate(self.n_cats_per_cov)
            ]
        if cont_covs is not None and self.n_continuous_cov:
            parts.append(cont_covs.float())
        h = torch.ones(n_donors, self.n_donor_latent, device=self.tissue_embedding.device)
        if parts:
            covariates = torch.cat(parts, dim=1)
            h = torch.cat([covariates, h[:, covariates.shape[1] :]], dim=1)
        return h

    # -- scvi-tools module protocol -------------------------------------------------------------
    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        x = tensors[REGISTRY_KEYS.X_KEY]
        observed = tensors[REGISTRY_KEYS.OBSERVED_KEY] > 0
        if self.training:
            source, target = random_split(observed, exponent=self.source_count_exponent)
        else:
            source, target = fixed_split(
                observed,
                tensors[REGISTRY_KEYS.INDICES_KEY].ravel(),
                self.validation_seed,
                exponent=self.source_count_exponent,
            )
        return {
            "x": x,
            "source_mask": source,
            "target_mask": target,
            "cat_covs": tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            "cont_covs": tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
        }

    @auto_move_data
    def inference(
        self,
        x: torch.Tensor,
        source_mask: torch.Tensor,
        target_mask: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return donor embeddings from the expression of each donor's source tissues.

        Parameters
        ----------
        x
            ``(n_donors, n_tissues * n_genes)`` stacked expression.
        source_mask
            Boolean ``(n_donors, n_tissues)``: tissues whose hyperedges enter message passing.
        target_mask
            Boolean ``(n_donors, n_tissues)``; passed through for ``generative`` and ``loss``.
        cat_covs, cont_covs
            Registered donor covariates.
        """
        edge_donor, edge_tissue = source_mask.nonzero(as_tuple=True)
        edge_attr = self.encode(x, edge_donor, edge_tissue)
        h = self.propagate(
            self.initial_donor(x.shape[0], cat_covs, cont_covs), edge_attr, edge_donor, edge_tissue
        )
        return {"donor": h, "source_mask": source_mask, "target_mask": target_mask}

    def _targets(self, tensors, target_mask: torch.Tensor):
        """Return donor rows, tissue indices and observed expression of every target pair."""
        donor_row, tissue_index = target_mask.nonzero(as_tuple=True)
        return donor_row, tissue_index, self.samples(tensors[REGISTRY_KEYS.X_KEY], donor_row, tissue_index)

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        target_mask = inference_outputs["target_mask"]
        if self.counts:
            donor_row, tissue_index, x = self._targets(tensors, target_mask)
            library = x.sum(dim=-1)
        else:  # only the loss reads the targets' expression
            (donor_row, tissue_index), library = target_mask.nonzero(as_tuple=True), None
        source_mask = inference_outputs["source_mask"][donor_row]
        return {
            "donor": inference_outputs["donor"][donor_row],
            "tissue_index": tissue_index,
            "library": library,
            "gene_offset": self.gene_offset(
                tensors[REGISTRY_KEYS.X_KEY], donor_row, source_mask, tissue_index
            ),
        }

    @auto_move_data
    def generative(
        self,
        donor: torch.Tensor,
        tissue_index: torch.Tensor,
        library: torch.Tensor | None = None,
        gene_offset: torch.Tensor | None = None,
    ) -> dict:
        """Return the predictive distribution ``px`` of each target (donor, tissue) pair.

        Parameters
        ----------
        donor
            ``(n_targets, n_donor_latent)`` embedding of each target's donor.
        tissue_index
            ``(n_targets,)`` target tissue of each target.
        library
            Count likelihoods only: ``(n_targets,)`` library sizes of the targets; ``None`` uses
            the median of the predicted log-normal library size.
        gene_offset
            ``(n_targets, n_genes)`` :meth:`gene_offset` of the targets, added to the Gaussian mean
            or to the gene-proportion logits; ``None`` for none.

        Returns
        -------
        ``{"px": distribution}``; count likelihoods add ``"proportions"`` (gene proportions) and
        ``"log_library"`` (the predicted Normal over the log library size).
        """
        if tissue_index.numel() == 0:  # a minibatch without targets (every donor gave one tissue)
            return {"px": None}
        metagene_attr = self.predictor([donor, self.tissue_embedding[tissue_index]], self.metagene_embedding)
        if not self.counts:
            # training never calibrates (HYFA.train resets it first): no device sync on the hot path
            if self.training or self.calibration.is_identity:
                return {"px": self.decoder(metagene_attr, gene_offset)}
            px = self.decoder(metagene_attr)
            center = self.input_loc[tissue_index]  # the tissues' gene means
            mean = self.calibration(px.loc, center, gene_offset, tissue_index)
            return {"px": Normal(mean, px.scale, validate_args=False)}
        params = self.decoder(metagene_attr, gene_offset)
        if library is None:
            library = predicted_library(params["log_library"])
        px = count_distribution(params["proportions"], params["theta"], params["zi_logits"], library)
        return {"px": px, "proportions": params["proportions"], "log_library": params["log_library"]}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Return the mean over donors of the mean target negative log-likelihood per gene.

        With a count likelihood, each target adds the negative log-likelihood of its observed log
        library size under the library model, divided by the number of genes.
        """
        target_mask = inference_outputs["target_mask"]
        if generative_outputs["px"] is None:  # no targets: zero loss, still attached to the graph
            zero = inference_outputs["donor"].sum() * 0.0
            return LossOutput(loss=zero, reconstruction_loss=zero.reshape(1)[:0], n_obs_minibatch=1)
        n_donors = target_mask.shape[0]
        donor_row, _, x = self._targets(tensors, target_mask)
        px = generative_outputs["px"]
        if self.counts:
            nll = -px.log_prob(x).mean(dim=-1)
        else:  # the same function as -px.log_prob(x).mean(-1), in a third of the passes over the genes
            from hyfa.nn import gaussian_nll

            nll = gaussian_nll(x, px.loc, px.scale)
        if self.counts:
            library_nll = -generative_outputs["log_library"].log_prob(log_library(x.sum(dim=-1)))
            nll = nll + library_nll / self.n_genes
        per_donor = torch.zeros(n_donors, device=nll.device).index_add(0, donor_row, nll)
        n_targets = target_mask.sum(dim=1)
        has_target = n_targets > 0
        per_donor = per_donor[has_target] / n_targets[has_target]
        loss = per_donor.mean() if per_donor.numel() else nll.sum()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                "HYFA's training loss became NaN or infinite. Check the registered expression for extreme "
                "values (normalize raw counts, or use gene_likelihood='nb' for them) or lower the learning rate (plan_kwargs={'lr': ...})."
            )
        return LossOutput(
            loss=loss, reconstruction_loss=per_donor, n_obs_minibatch=max(int(has_target.sum()), 1)
        )


def _fill_missing(module, state_dict, prefix, *args) -> None:
    """Load a state dict saved before the gene-level skip or the calibration as its exact predictions.

    A missing skip loads as zero, a missing calibration as the identity.
    """
    for name, part, fill in (
        ("skip.", module.skip, torch.zeros_like),
        ("calibration.", module.calibration, torch.ones_like),
    ):
        if part is None or any(key.startswith(prefix + name) for key in state_dict):
            continue
        for key, value in part.state_dict().items():
            state_dict[prefix + name + key] = fill(value)
