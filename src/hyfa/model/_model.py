"""``HYFA``: the user-facing model :cite:p:`Vinas2023`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import MuDataCategoricalJointObsField, MuDataNumericalJointObsField
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from hyfa._constants import INDICES_OBS_KEY, REGISTRY_KEYS
from hyfa._utils import as_list as _as_list
from hyfa.module import HYFAModule
from hyfa.module._module import ENCODER_TARGET_SUM, GENE_LIKELIHOODS
from hyfa.nn import count_distribution, count_variance, predicted_library

from ._registration import _preview, check_counts, resolve_genes, resolve_tissues
from ._scvi_internals import (
    VALIDATION_CHECKS,
    DonorIndicesField,
    ObservedTissuesField,
    TissueExpressionField,
    registered_tissues_and_genes,
)
from ._signatures import CellTypeSignatureMixin

logger = logging.getLogger(__name__)

#: Learning rate of the paper's tuned configuration.
PAPER_LR = 4.56e-4


def _check_covariates(mdata: MuData, keys: Sequence[str] | None, kind: str) -> None:
    for key in keys or []:
        if key not in mdata.obs.columns:
            raise KeyError(f"{kind} covariate {key!r} is not a column of mdata.obs.")
        missing = mdata.obs_names[pd.isna(mdata.obs[key]).to_numpy()]
        if len(missing):
            raise ValueError(f"{kind} covariate {key!r} is missing for donors {_preview(missing)}.")
        if kind == "continuous" and not np.isfinite(mdata.obs[key].to_numpy(dtype=float)).all():
            raise ValueError(f"Continuous covariate {key!r} holds infinite values.")


class HYFA(CellTypeSignatureMixin, UnsupervisedTrainingMixin, BaseModelClass):
    """Hypergraph factorization for multi-tissue gene expression imputation :cite:p:`Vinas2023`.

    Each donor is a node of a hypergraph whose hyperedges join the donor, a tissue it gave and a
    metagene. Message passing over the hyperedges of a donor's *source* tissues yields a donor
    embedding, from which the model predicts the metagenes, and then the genes, of any *target*
    tissue. Training hides a random subset of each donor's tissues every time it is drawn.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`: one modality per tissue, donors as obs.
    n_metagenes
        Metagenes ``M``.
    n_factors
        Features per metagene.
    n_donor_latent, n_tissue_latent, n_metagene_latent
        Embedding sizes of donor, tissue and metagene nodes.
    n_heads, n_head_dim
        Attention heads of the message-passing layers and message features per head.
    n_graph_layers
        Message-passing layers (each with its own weights).
    n_predictor_layers
        Hidden layers of the target hyperedge MLP.
    n_hidden_decoder
        Width of the decoder's hidden layer ``e_hat``.
    dropout_rate
        Dropout throughout.
    residual_update
        Donor update ``h + phi_h(h, m)`` (default) or the paper's ``phi_h(h, m)``.
    encoder_activation
        ``"relu"`` as in the paper, or ``None`` for a linear metagene encoder.
    norm
        Normalization inside every MLP: ``None`` (default), ``"batch"`` (the authors'
        implementation) or ``"layer"``. On the bundled GTEx data, ``None`` learned donor-specific
        signal within 25 epochs where layer normalization did not; without batch normalization a
        donor's prediction never depends on the other donors of its minibatch.
    gene_likelihood
        ``"normal"`` for normalized expression (e.g. :func:`hyfa.pp.normalize_gtex`); ``"nb"``
        (negative binomial) or ``"zinb"`` (zero-inflated negative binomial) for raw counts, with
        the gene proportions, dispersion and a log-normal library size predicted per target
        (the names follow :class:`scvi.model.SCVI`). Counts must be non-negative integers. The
        library size is the total over the *modelled* genes: for a gene panel such as
        :func:`hyfa.data.gtex_acmg59` it is not the sequencing depth.
    source_count_exponent
        How many of a donor's ``n`` tissues the pseudo-masks make sources: ``k = 1 + floor((n - 1)
        u ** source_count_exponent)`` with ``u ~ Uniform[0, 1)``. 1 is the paper's ``k ~ Uniform{1, ...,
        n - 1}``, which rarely shows the model a donor with one or a few tissues; the default 3 draws
        ``k = 1`` about 40% of the time for a donor with 18 tissues. On the bundled GTEx data (the
        ``quick`` architecture, 240 epochs; ``benchmarks/gtex_acmg59.py --source-count-exponent``) it
        raised the mean per-gene Pearson r from whole blood alone from 0.176-0.185 (2 runs) to
        0.204-0.222 (3 runs; TEEBoT: 0.190) and from the four accessible tissues from 0.279-0.284 to
        0.292-0.298, with all other tissues as sources about unchanged (0.324-0.326 vs 0.320-0.332).
    validation_seed
        Seed of the fixed source/target split of validation donors.

    Notes
    -----
    Defaults are the paper's tuned configuration, except ``source_count_exponent``. That configuration
    (50 metagenes x 98 factors) was tuned for ~12,500 genes; for a panel of tens to hundreds of genes a
    smaller model trains several times faster and imputes as well or better, e.g. the ``quick`` preset
    of ``hyfa demo`` (10 metagenes x 32 factors, 8 heads x 16, embeddings 64 / 32 / 16, decoder width
    128, learning rate 2e-3). Training defaults (Adam, learning rate
    4.56e-4, no weight decay, 63 donors per batch, 200 epochs) are in :meth:`train`.

    Examples
    --------
    >>> mdata = hyfa.data.gtex_acmg59()
    >>> hyfa.pp.normalize_gtex(mdata)
    >>> hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    >>> model = hyfa.HYFA(mdata)
    >>> model.train(split_key="split")
    >>> lung = model.get_imputed_expression(target_tissues="Lung", source_tissues=["Whole_Blood"])
    """

    _module_cls = HYFAModule

    def __init__(
        self,
        mdata: MuData | None = None,
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
        gene_likelihood: str = "normal",
        source_count_exponent: float = 3.0,
        validation_seed: int = 0,
    ):
        super().__init__(mdata)
        if gene_likelihood not in GENE_LIKELIHOODS:
            raise ValueError(f"gene_likelihood must be one of {GENE_LIKELIHOODS}, got {gene_likelihood!r}.")
        if not (np.isfinite(source_count_exponent) and source_count_exponent > 0):
            raise ValueError(
                f"source_count_exponent must be a positive number, got {source_count_exponent!r}."
            )
        tissues, genes = registered_tissues_and_genes(self.adata_manager)
        log_library = {}
        if gene_likelihood != "normal":
            check_counts(self.adata, tissues, genes, self.adata_manager.registry["setup_args"].get("layer"))
            log_library = self._log_library_stats()
        n_cats_per_cov = (
            self.adata_manager.get_state_registry(REGISTRY_KEYS.CAT_COVS_KEY).n_cats_per_key
            if REGISTRY_KEYS.CAT_COVS_KEY in self.adata_manager.data_registry
            else None
        )
        self.module = self._module_cls(
            n_genes=len(genes),
            n_tissues=len(tissues),
            n_cats_per_cov=n_cats_per_cov,
            n_continuous_cov=self.summary_stats.get("n_extra_continuous_covs", 0),
            n_metagenes=n_metagenes,
            n_factors=n_factors,
            n_donor_latent=n_donor_latent,
            n_tissue_latent=n_tissue_latent,
            n_metagene_latent=n_metagene_latent,
            n_heads=n_heads,
            n_head_dim=n_head_dim,
            n_graph_layers=n_graph_layers,
            n_predictor_layers=n_predictor_layers,
            n_hidden_decoder=n_hidden_decoder,
            dropout_rate=dropout_rate,
            residual_update=residual_update,
            encoder_activation=encoder_activation,
            norm=norm,
            gene_likelihood=gene_likelihood,
            source_count_exponent=source_count_exponent,
            validation_seed=validation_seed,
            **log_library,
        )
        self._model_summary_string = (
            f"HYFA model: {len(tissues)} tissues, {len(genes)} genes, {n_metagenes} metagenes x {n_factors}, "
            f"{n_graph_layers} graph layers, gene_likelihood: {gene_likelihood}."
        )
        if gene_likelihood != "normal":
            self.module.set_input_standardization(*self._log_count_stats())
        #: Cell-type signature part (see train_cell_type_signatures); saved and loaded with the model.
        self.signature_setup_: dict | None = None
        self.signature_history_: dict | None = None
        self.init_params_ = self._get_init_params(locals())

    def _log_count_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Return per-(tissue, gene) mean and sd of ``log1p`` counts per 10,000 over the registered samples."""
        x = sparse.csr_matrix(self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        observed = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY)) > 0
        n_tissues, n_genes = observed.shape[1], x.shape[1] // observed.shape[1]
        loc, scale = np.zeros((n_tissues, n_genes)), np.ones((n_tissues, n_genes))
        for t in range(n_tissues):
            rows = np.flatnonzero(observed[:, t])
            if len(rows) == 0:
                continue
            block = np.asarray(x[rows][:, t * n_genes : (t + 1) * n_genes].todense(), dtype=np.float64)
            logged = np.log1p(
                block * (ENCODER_TARGET_SUM / np.maximum(block.sum(axis=1, keepdims=True), 1.0))
            )
            loc[t] = logged.mean(axis=0)
            if len(rows) > 1:
                scale[t] = logged.std(axis=0)
        return loc, scale

    def _log_library_stats(self) -> dict[str, float]:
        """Return the mean and sd of the log total counts of all registered samples (init of the library model)."""
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        observed = np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY)) > 0
        n_tissues = observed.shape[1]
        block = sparse.kron(sparse.identity(n_tissues), np.ones((x.shape[1] // n_tissues, 1)), format="csr")
        totals = np.asarray((sparse.csr_matrix(x) @ block).todense())  # donors x tissues
        logs = np.log(np.maximum(totals[observed], 1.0))
        return {
            "log_library_mean": float(logs.mean()),
            "log_library_sd": float(logs.std()) if len(logs) > 1 else 1.0,
        }

    # -- registration -------------------------------------------------------------------------
    @classmethod
    def setup_anndata(cls, *args, **kwargs):
        """Not supported: HYFA needs one modality per tissue; use :meth:`setup_mudata`."""
        raise NotImplementedError(
            "HYFA models several tissues per donor: put each tissue in a MuData modality and call "
            "HYFA.setup_mudata (hyfa.data.from_long converts a samples x genes AnnData)."
        )

    @classmethod
    def setup_mudata(
        cls,
        mdata: MuData,
        layer: str | None = None,
        tissues: Sequence[str] | None = None,
        gene_mask_key: str | None = None,
        categorical_covariate_keys: list[str] | None = None,
        continuous_covariate_keys: list[str] | None = None,
        **kwargs,
    ):
        """Register a MuData of tissues with HYFA.

        Donors are matched across tissues by name: each tissue may hold any subset of
        ``mdata.obs_names`` in any order. Registration writes, and documents, only these entries
        of ``mdata``: ``obsm["_hyfa_expression"]`` (sparse donors x tissues*genes expression,
        aligned to ``obs_names``), ``obsm["_hyfa_observed"]`` (donors x tissues mask),
        ``obs["_indices"]``, scvi-tools' ``uns["_scvi_uuid"]`` / ``uns["_scvi_manager_uuid"]``
        and, with covariates, ``obsm["_scvi_extra_categorical_covs"]`` /
        ``obsm["_scvi_extra_continuous_covs"]``. They are rebuilt whenever the model meets new
        data or is loaded.

        Parameters
        ----------
        mdata
            One modality per tissue (donors x genes); every tissue measures the same genes.
        layer
            Layer of each tissue holding the expression; ``None`` uses ``X``.
        tissues
            Tissues to model, in order; ``None`` uses every modality.
        gene_mask_key
            Boolean ``var`` column present in every tissue (e.g. ``"common"`` from
            :func:`hyfa.pp.normalize_gtex`); genes where it is true in every tissue are modelled.
        categorical_covariate_keys
            Donor-level categorical columns of ``mdata.obs`` (e.g. sex), one-hot encoded into the
            first dimensions of the initial donor features.
        continuous_covariate_keys
            Donor-level continuous columns of ``mdata.obs`` (e.g. age / 100).
        **kwargs
            Passed to :meth:`scvi.data.AnnDataManager.register_fields`.
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        source_registry = kwargs.get("source_registry")
        if source_registry is not None:  # HYFA.load: tissues and genes come from the saved registry
            state = source_registry["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
            tissue_list, genes = list(state["tissues"]), list(state["genes"])
        else:
            tissue_list = resolve_tissues(mdata, tissues)
            genes = resolve_genes(mdata, tissue_list, gene_mask_key)
        _check_covariates(mdata, categorical_covariate_keys, "categorical")
        _check_covariates(mdata, continuous_covariate_keys, "continuous")
        field_args = {
            "tissues": tissue_list,
            "genes": genes,
            "layer": layer,
            "all_modalities": tissues is None,
        }
        fields = [
            TissueExpressionField(REGISTRY_KEYS.X_KEY, **field_args),
            ObservedTissuesField(REGISTRY_KEYS.OBSERVED_KEY, **field_args),
            DonorIndicesField(REGISTRY_KEYS.INDICES_KEY, INDICES_OBS_KEY, mod_key=None),
            MuDataCategoricalJointObsField(
                REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys, mod_key=None
            ),
            MuDataNumericalJointObsField(
                REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys, mod_key=None
            ),
        ]
        adata_manager = AnnDataManager(
            fields=fields, setup_method_args=setup_method_args, validation_checks=VALIDATION_CHECKS
        )
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    @property
    def tissues(self) -> list[str]:
        """Tissues the model knows, in registry order."""
        return registered_tissues_and_genes(self.adata_manager)[0]

    @property
    def genes(self) -> list[str]:
        """Genes the model predicts, in registry order."""
        return registered_tissues_and_genes(self.adata_manager)[1]

    # -- training -----------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int = 200,
        train_donors: Sequence[str] | None = None,
        validation_donors: Sequence[str] | None = None,
        split_key: str | None = None,
        lr: float = PAPER_LR,
        batch_size: int = 63,
        early_stopping: bool = False,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        train_size: float | None = None,
        validation_size: float | None = None,
        datasplitter_kwargs: dict | None = None,
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ):
        """Train the model with pseudo-masks :cite:p:`Vinas2023`.

        Each time a training donor is drawn, ``k`` of its ``n`` tissues are sources and the rest
        targets (``k = 1 + floor((n - 1) u ** source_count_exponent)``, see :class:`HYFA`; the
        paper's ``k ~ Uniform{1..n-1}`` with ``source_count_exponent=1``); the loss is the mean negative log-likelihood (of the
        model's ``gene_likelihood``) over the targets. Validation donors use source/target splits
        fixed by ``validation_seed``.

        Donors are split, by name, in the first way given: ``train_donors`` (and
        ``validation_donors``; all other donors are held out as test donors and never seen);
        ``split_key``, a column of ``mdata.obs`` with ``"train"``, ``"val"``/``"validation"``
        and other values (e.g. ``"test"``, held out); else a random split by ``train_size``.

        Parameters
        ----------
        max_epochs
            Passes through the training donors.
        train_donors
            Names of the training donors.
        validation_donors
            Names of the validation donors (with ``train_donors``).
        split_key
            Column of ``mdata.obs`` naming each donor's split.
        lr
            Adam learning rate (the paper's 4.56e-4). Adam's ``eps`` is torch's default (1e-8) and
            there is no weight decay, unlike scvi-tools' defaults; override in ``plan_kwargs``.
            Adam runs fused (:class:`~hyfa.module._optim.InPlaceAdam`: each parameter updated in
            place, without temporaries the size of the encoder weight); ``plan_kwargs={"optimizer":
            "Adam"}`` uses scvi-tools' own.
        batch_size
            Donors per minibatch.
        early_stopping
            Stop when ``elbo_validation`` (the validation loss) stops improving; see
            :class:`scvi.train.Trainer` for ``early_stopping_patience`` etc.
        accelerator, devices
            Passed to :class:`scvi.train.Trainer`.
        train_size, validation_size
            Random split fractions when no donor split is given.
        datasplitter_kwargs
            Passed to :class:`scvi.dataloaders.DataSplitter`.
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan`; overrides the optimizer settings above.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`. ``precision="bf16-mixed"`` trains in bfloat16
            autocast: about 2x faster on CPUs with AVX512-BF16 or AMX (slower on CPUs without
            them), with per-gene Pearson within 0.001 of float32 on the bundled GTEx data
            (``benchmarks/train_speed.py``). float32 stays the default.
        """
        datasplitter_kwargs = dict(datasplitter_kwargs or {})
        split = self._donor_split(train_donors, validation_donors, split_key)
        n_train = self.adata.n_obs if split is None else len(split[0])
        if split is not None:
            datasplitter_kwargs["external_indexing"] = split
        if n_train % batch_size == 1:  # a lone donor cannot be batch-normalized
            datasplitter_kwargs.setdefault("drop_last", True)
        has_validation = (
            (len(split[1]) > 0)
            if split is not None
            else (validation_size or 0) > 0 or not train_size or train_size < 1
        )
        if has_validation:  # report the validation loss every epoch, as history["elbo_validation"]
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        from hyfa.module._optim import adam_plan_kwargs  # torch's fused Adam: in place, no temporaries

        plan_kwargs = adam_plan_kwargs(lr, plan_kwargs)
        return super().train(
            max_epochs=max_epochs,
            accelerator=accelerator,
            devices=devices,
            train_size=train_size,
            validation_size=validation_size,
            batch_size=batch_size,
            early_stopping=early_stopping,
            datasplitter_kwargs=datasplitter_kwargs,
            plan_kwargs=plan_kwargs,
            **trainer_kwargs,
        )

    def _donor_indices(self, mdata: MuData, donors: Sequence[str], what: str = "donors") -> np.ndarray:
        donors = _as_list(donors)
        idx = mdata.obs_names.get_indexer(donors)
        if (idx < 0).any():
            unknown = [d for d, i in zip(donors, idx, strict=True) if i < 0]
            raise ValueError(f"Unknown {what} (not in mdata.obs_names): {_preview(unknown)}.")
        if len(set(idx)) != len(idx):
            raise ValueError(f"{what.capitalize()} listed more than once.")
        return idx

    def _donor_split(self, train_donors, validation_donors, split_key) -> list[np.ndarray] | None:
        mdata = self.adata
        if train_donors is not None:
            train = self._donor_indices(mdata, train_donors, "training donors")
            val = (
                np.array([], dtype=int)
                if validation_donors is None
                else self._donor_indices(mdata, validation_donors, "validation donors")
            )
        elif split_key is not None:
            if split_key not in mdata.obs.columns:
                raise KeyError(f"split_key {split_key!r} is not a column of mdata.obs.")
            labels = mdata.obs[split_key].astype(str).str.lower().to_numpy()
            train = np.flatnonzero(labels == "train")
            val = np.flatnonzero(np.isin(labels, ["val", "validation"]))
            if len(train) == 0:
                raise ValueError(f"No donor has mdata.obs[{split_key!r}] == 'train'.")
        else:
            if validation_donors is not None:
                raise ValueError("validation_donors needs train_donors.")
            return None
        overlap = np.intersect1d(train, val)
        if len(overlap):
            raise ValueError(f"Donors both in training and validation: {_preview(mdata.obs_names[overlap])}.")
        test = np.setdiff1d(np.arange(mdata.n_obs), np.concatenate([train, val]))
        return [train, val, test]

    # -- predictions --------------------------------------------------------------------------
    def _check_tissues(self, names: Sequence[str], what: str) -> list[int]:
        unknown = [t for t in names if t not in self.tissues]
        if unknown:
            raise ValueError(
                f"Unknown {what} {_preview(unknown)}; the model knows {_preview(self.tissues, 60)}."
            )
        return [self.tissues.index(t) for t in names]

    def _source_masks(self, observed: np.ndarray, source_idx, target_idx, exclude_target, donor_names):
        """Return a boolean source mask per target tissue, raising for donors without sources."""
        masks = {}
        for t in target_idx:
            allowed = np.zeros(observed.shape[1], dtype=bool)
            allowed[source_idx] = True
            if exclude_target:
                allowed[t] = False
            mask = (observed > 0) & allowed[None, :]
            lacking = np.flatnonzero(~mask.any(axis=1))
            if len(lacking):
                raise ValueError(
                    f"{len(lacking)} donors have none of the source tissues for target {self.tissues[t]!r}: "
                    f"{_preview(np.asarray(donor_names)[lacking])}. Pass donors=... or other source_tissues."
                )
            masks[t] = mask
        return masks

    def _batches(self, mdata: MuData, indices: np.ndarray, batch_size: int | None):
        loader = self._make_data_loader(adata=mdata, indices=indices, batch_size=batch_size, shuffle=False)
        start = 0
        for tensors in loader:
            n = tensors[REGISTRY_KEYS.X_KEY].shape[0]
            yield slice(start, start + n), tensors
            start += n

    def _embed(self, tensors: dict, source_mask: np.ndarray) -> torch.Tensor:
        device = self.module.device
        return self.module.inference(
            x=tensors[REGISTRY_KEYS.X_KEY].to(device),
            source_mask=torch.as_tensor(source_mask, device=device),
            cat_covs=tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
            cont_covs=tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
        )["donor"]

    def _prepare(self, mdata, donors, source_tissues, target_tissues, exclude_target):
        mdata = self._validate_anndata(mdata)
        manager = self.get_anndata_manager(mdata, required=True)
        indices = np.arange(mdata.n_obs) if donors is None else self._donor_indices(mdata, donors)
        donor_names = mdata.obs_names[indices]
        observed = np.asarray(manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY))[indices]
        source_idx = self._check_tissues(_as_list(source_tissues) or self.tissues, "source tissues")
        target_idx = self._check_tissues(target_tissues, "target tissues")
        masks = self._source_masks(observed, source_idx, target_idx, exclude_target, donor_names)
        return mdata, indices, donor_names, masks

    @torch.inference_mode()
    def get_imputed_expression(
        self,
        mdata: MuData | None = None,
        target_tissues: str | Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        exclude_target: bool = True,
        n_samples: int = 1,
        return_samples: bool = False,
        batch_size: int | None = None,
        library_size: str | float = "latent",
    ) -> AnnData | MuData | tuple[AnnData, np.ndarray] | tuple[MuData, dict[str, np.ndarray]]:
        """Return each donor's predicted expression in the target tissues.

        The donor embedding comes from the donor's source tissues: those in ``source_tissues``
        (default: all) that the donor gave, never the target itself when ``exclude_target``.
        Donors unseen in training work the same way.

        Parameters
        ----------
        mdata
            Data to predict from; ``None`` uses the registered MuData. New data are registered
            against the model's tissues and genes.
        target_tissues
            One tissue (returns an AnnData) or several (returns a MuData); ``None`` means all.
        source_tissues
            Tissues the donor embedding may use.
        donors
            Donor names (default: every donor of ``mdata``).
        exclude_target
            Never use the target tissue as a source.
        n_samples
            Draws from the predictive distribution; with ``n_samples > 1``, ``X`` is their mean.
        return_samples
            Also return the draws, ``(n_samples, n_donors, n_genes)`` per target.
        batch_size
            Donors per minibatch.
        library_size
            Count likelihoods only. ``"latent"``: the library size the model predicts for the
            target (the mean of its log-normal, or draws from it with ``n_samples > 1``);
            ``"observed"``: the target's observed total counts (every donor must have the
            target, and ``exclude_target`` still keeps it out of the sources); a number: that
            library for every donor (e.g. ``1e4`` for counts per 10,000, or ``1`` for
            proportions).

        Returns
        -------
        One AnnData per target tissue: obs = donors (with the donor-level columns of
        ``mdata.obs``), var = genes, ``X`` = predicted mean, ``layers["sd"]`` = predictive standard
        deviation (for counts, given the library size), ``uns["hyfa"]`` = the tissues used and,
        for counts, ``obs["library_size"]`` = the library size of each prediction. With ``return_samples``, a tuple of that and
        the draws (an array, or a dict of arrays by tissue).
        """
        single = isinstance(target_tissues, str)
        targets = _as_list(target_tissues) or self.tissues
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        self._check_library_size(library_size)
        mdata, indices, donor_names, masks = self._prepare(
            mdata, donors, source_tissues, targets, exclude_target
        )
        if library_size == "observed":
            self._check_observed_targets(mdata, indices, donor_names, masks)
        self.module.eval()
        n_genes = len(self.genes)
        means = {t: np.empty((len(indices), n_genes), np.float32) for t in masks}
        sds = {t: np.empty((len(indices), n_genes), np.float32) for t in masks}
        libraries = {t: np.empty(len(indices), np.float32) for t in masks}
        sample = return_samples or n_samples > 1
        draws = {t: np.empty((n_samples, len(indices), n_genes), np.float32) for t in masks} if sample else {}
        for rows, tensors in self._batches(mdata, indices, batch_size):
            for t, mask in masks.items():
                h = self._embed(tensors, mask[rows])
                tissue_index = torch.full((h.shape[0],), t, device=h.device)
                if not self.module.counts:
                    px = self.module.generative(h, tissue_index)["px"]
                    means[t][rows] = px.mean.cpu().numpy()
                    sds[t][rows] = px.stddev.cpu().numpy()
                    if sample:
                        draws[t][:, rows] = px.sample((n_samples,)).cpu().numpy()
                    continue
                library = self._library(tensors, t, library_size, h.shape[0])
                out = self.module.generative(h, tissue_index, library=library)
                px = out["px"]
                libraries[t][rows] = (
                    library if library is not None else predicted_library(out["log_library"])
                ).cpu()
                means[t][rows] = px.mean.cpu().numpy()
                sds[t][rows] = count_variance(px).sqrt().cpu().numpy()
                if sample:
                    draws[t][:, rows] = self._sample_counts(out, library, n_samples).cpu().numpy()
        obs = self._donor_obs(mdata, donor_names)
        adatas = {}
        for t in masks:
            name = self.tissues[t]
            X = draws[t].mean(axis=0) if n_samples > 1 else means[t]
            var = (
                mdata.mod[name].var.loc[self.genes].copy()
                if name in mdata.mod
                else pd.DataFrame(index=self.genes)
            )
            adatas[name] = AnnData(X=X, obs=obs.copy(), var=var, layers={"sd": sds[t]})
            if self.module.counts:
                adatas[name].obs["library_size"] = libraries[t]
            used = [self.tissues[k] for k in np.flatnonzero(masks[t].any(axis=0))]
            adatas[name].uns["hyfa"] = {
                "target_tissue": name,
                "source_tissues": used,
                "exclude_target": exclude_target,
            }
        result = adatas[targets[0]] if single else MuData(adatas)
        if not return_samples:
            return result
        samples = {self.tissues[t]: draws[t] for t in masks}
        return (result, samples[targets[0]]) if single else (result, samples)

    def _check_library_size(self, library_size) -> None:
        if isinstance(library_size, str):
            if library_size not in ("latent", "observed"):
                raise ValueError(
                    f"library_size must be 'latent', 'observed' or a number, got {library_size!r}."
                )
        elif not (np.isscalar(library_size) and np.isfinite(library_size) and library_size > 0):
            raise ValueError(
                f"library_size must be 'latent', 'observed' or a positive number, got {library_size!r}."
            )
        if library_size != "latent" and not self.module.counts:
            raise ValueError(
                "library_size applies to count likelihoods ('nb', 'zinb'); this model's gene_likelihood is "
                f"{self.module.gene_likelihood!r}."
            )

    def _check_observed_targets(self, mdata, indices, donor_names, masks) -> None:
        observed = np.asarray(self.get_anndata_manager(mdata).get_from_registry(REGISTRY_KEYS.OBSERVED_KEY))
        for t in masks:
            lacking = np.flatnonzero(observed[indices, t] == 0)
            if len(lacking):
                raise ValueError(
                    f"library_size='observed' needs the observed target, but {len(lacking)} donors lack "
                    f"{self.tissues[t]!r}: {_preview(np.asarray(donor_names)[lacking])}. Use library_size='latent'."
                )

    def _library(self, tensors: dict, t: int, library_size, n: int) -> torch.Tensor | None:
        """Return the library sizes of a minibatch's predictions of tissue ``t`` (``None``: predicted)."""
        device = self.module.device
        if library_size == "latent":
            return None
        if library_size == "observed":
            x = tensors[REGISTRY_KEYS.X_KEY].to(device).view(n, len(self.tissues), len(self.genes))
            return x[:, t].sum(dim=-1)
        return torch.full((n,), float(library_size), device=device)

    @staticmethod
    def _sample_counts(out: dict, library: torch.Tensor | None, n_samples: int) -> torch.Tensor:
        """Return ``(n_samples, n, n_genes)`` draws, each with a library drawn from its log-normal when ``None``."""
        px = out["px"]
        if library is not None:
            return px.sample((n_samples,))
        zi_logits = getattr(px, "zi_logits", None)
        draws = [
            count_distribution(
                out["proportions"], px.theta, zi_logits, torch.exp(out["log_library"].sample())
            ).sample()
            for _ in range(n_samples)
        ]
        return torch.stack(draws)

    @staticmethod
    def _donor_obs(mdata: MuData, donor_names: pd.Index) -> pd.DataFrame:
        columns = [c for c in mdata.obs.columns if ":" not in c and not c.startswith("_")]
        return mdata.obs.loc[donor_names, columns].copy()

    @torch.inference_mode()
    def get_latent_representation(
        self,
        mdata: MuData | None = None,
        kind: str = "donor",
        donors: Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Return learned embeddings.

        Parameters
        ----------
        mdata
            Data to embed donors from; ``None`` uses the registered MuData.
        kind
            ``"donor"``: ``(n_donors, n_donor_latent)`` embeddings after message passing over the
            donors' ``source_tissues`` (ready for ``adata.obsm``); ``"tissue"``: ``(n_tissues,
            n_tissue_latent)`` in :attr:`tissues` order; ``"metagene"``: ``(n_metagenes,
            n_metagene_latent)``.
        donors
            Donor names (``kind="donor"``); default every donor.
        source_tissues
            Tissues the donor embeddings may use (default all).
        batch_size
            Donors per minibatch.
        """
        if kind == "tissue":
            return self.module.tissue_embedding.detach().cpu().numpy().copy()
        if kind == "metagene":
            return self.module.metagene_embedding.detach().cpu().numpy().copy()
        if kind != "donor":
            raise ValueError(f"kind must be 'donor', 'tissue' or 'metagene', got {kind!r}.")
        mdata, indices, _, masks = self._prepare(mdata, donors, source_tissues, [self.tissues[0]], False)
        mask = next(iter(masks.values()))
        self.module.eval()
        out = np.empty((len(indices), self.module.n_donor_latent), np.float32)
        for rows, tensors in self._batches(mdata, indices, batch_size):
            out[rows] = self._embed(tensors, mask[rows]).cpu().numpy()
        return out
