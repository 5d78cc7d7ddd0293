"""``HYFA``: the user-facing model :cite:p:`Vinas2023`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from mudata import MuData
from scvi.model.base import BaseModelClass, UnsupervisedTrainingMixin

from hyfa._constants import INDICES_OBS_KEY, REGISTRY_KEYS
from hyfa._docs import architecture, doc_params, likelihood, pseudo_masks
from hyfa.module import GENE_LIKELIHOODS, HYFAModule

from ._calibration import FOLD_TRAIN_ARGS, CalibrationMixin, calibrates
from ._completion import CompletionMixin
from ._donors import DonorMixin, auto_batch_size, n_training_donors
from ._imputation import ImputationMixin
from ._interpretation import InterpretationMixin
from ._registration import check_counts, resolve_genes, resolve_tissues
from ._scvi_internals import (
    VALIDATION_CHECKS,
    CategoricalCovariatesField,
    ContinuousCovariatesField,
    DonorIndicesField,
    HYFADataManager,
    ObservedTissuesField,
    SampleRowsField,
    check_new_counts,
    registered_tissues_and_genes,
    sample_rows_of,
    tissue_blocks,
)
from ._signatures import CellTypeSignatureMixin
from ._statistics import input_statistics, log_library_statistics
from ._validation import (
    check_covariates,
    check_fraction,
    check_positive_int,
    check_positive_number,
    check_saved_model,
    check_training_donors,
)

logger = logging.getLogger(__name__)

#: Learning rate of the paper's tuned configuration.
PAPER_LR = 4.56e-4


@doc_params(architecture=architecture, likelihood=likelihood, pseudo_masks=pseudo_masks)
class HYFA(
    ImputationMixin,
    CalibrationMixin,
    InterpretationMixin,
    CompletionMixin,
    CellTypeSignatureMixin,
    DonorMixin,
    UnsupervisedTrainingMixin,
    BaseModelClass,
):
    """Hypergraph factorization for multi-tissue gene expression imputation :cite:p:`Vinas2023`.

    Each donor is a node of a hypergraph whose hyperedges join the donor, a tissue it gave and a
    metagene. Message passing over the hyperedges of a donor's *source* tissues yields a donor
    embedding, from which the model predicts the metagenes, and then the genes, of any *target*
    tissue. Training hides a random subset of each donor's tissues every time it is drawn.

    Parameters
    ----------
    mdata
        MuData registered with :meth:`setup_mudata`: one modality per tissue, donors as obs.
    {architecture}
    {likelihood}
    {pseudo_masks}

    Notes
    -----
    Defaults are the paper's tuned configuration, except ``source_count_exponent``. That configuration
    (50 metagenes x 98 factors) was tuned for ~12,500 genes; for a panel of tens to hundreds of genes a
    smaller model trains several times faster and imputes as well or better, e.g. the ``quick`` preset
    (:func:`hyfa.preset`; 10 metagenes x 32 factors, 8 heads x 16, embeddings 64 / 32 / 16, decoder
    width 128, learning rate 2e-3), as in the example below. Training defaults (Adam, learning rate
    4.56e-4, no weight decay, 63 donors per batch (fewer in small cohorts), 200 epochs) are in :meth:`train`.

    Examples
    --------
    >>> mdata = hyfa.data.gtex_acmg59()
    >>> hyfa.pp.normalize_gtex(mdata)
    >>> hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    >>> quick = hyfa.preset("quick")  # a small gene panel; the defaults suit whole transcriptomes
    >>> model = hyfa.HYFA(mdata, **quick.model)
    >>> model.train(split_key="split", **quick.train)
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
        gene_skip: bool = True,
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
            check_counts(tissue_blocks(self.adata_manager), genes)
            log_library = log_library_statistics(
                tissue_blocks(self.adata_manager), sample_rows_of(self.adata_manager)
            )
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
            gene_skip=gene_skip,
            gene_likelihood=gene_likelihood,
            source_count_exponent=source_count_exponent,
            validation_seed=validation_seed,
            **log_library,
        )
        self._model_summary_string = (
            f"HYFA model: {len(tissues)} tissues, {len(genes)} genes, {n_metagenes} metagenes x {n_factors}, "
            f"{n_graph_layers} graph layers, gene_likelihood: {gene_likelihood}."
        )
        # what the skip standardizes by, and the calibration's centers (the tissues' gene means)
        self.module.set_input_standardization(
            *input_statistics(
                tissue_blocks(self.adata_manager), sample_rows_of(self.adata_manager), self.module.counts
            )
        )
        #: Cell-type signature part (see train_cell_type_signatures); saved and loaded with the model.
        self.signature_setup_: dict | None = None
        self.signature_history_: dict | None = None
        self.init_params_ = self._get_init_params(locals())

    def _validate_anndata(self, adata: MuData | None = None, copy_if_view: bool = True, **kwargs):
        """Register new data against the model; count models first check that they hold raw counts."""
        module = getattr(self, "module", None)
        if (
            adata is not None
            and module is not None
            and module.counts
            and self.get_anndata_manager(adata) is None
        ):
            check_new_counts(adata, self.registry_)
        return super()._validate_anndata(adata, copy_if_view=copy_if_view, **kwargs)

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
        of ``mdata``: ``obsm["_hyfa_samples"]`` (donors x tissues, the row of each donor's sample in
        each tissue, -1 where absent; the expression itself is read from the tissues, never
        copied), ``obsm["_hyfa_observed"]`` (donors x tissues mask),
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
            check_covariates(mdata, categorical_covariate_keys, "categorical")
            check_covariates(mdata, continuous_covariate_keys, "continuous")
        field_args = {
            "tissues": tissue_list,
            "genes": genes,
            "layer": layer,
            "all_modalities": tissues is None,
        }
        fields = [
            SampleRowsField(REGISTRY_KEYS.X_KEY, **field_args),
            ObservedTissuesField(REGISTRY_KEYS.OBSERVED_KEY, **field_args),
            DonorIndicesField(REGISTRY_KEYS.INDICES_KEY, INDICES_OBS_KEY, mod_key=None),
            CategoricalCovariatesField(REGISTRY_KEYS.CAT_COVS_KEY, categorical_covariate_keys, mod_key=None),
            ContinuousCovariatesField(REGISTRY_KEYS.CONT_COVS_KEY, continuous_covariate_keys, mod_key=None),
        ]
        adata_manager = HYFADataManager(
            fields=fields, setup_method_args=setup_method_args, validation_checks=VALIDATION_CHECKS
        )
        adata_manager.register_fields(mdata, **kwargs)
        cls.register_manager(adata_manager)

    def _registered_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Return the registered tissues and genes, read from the registry once (it is slow to read)."""
        if "_names_cache" not in self.__dict__:
            tissues, genes = registered_tissues_and_genes(self.adata_manager)
            self.__dict__["_names_cache"] = (tuple(tissues), tuple(genes))
        return self.__dict__["_names_cache"]

    @property
    def tissues(self) -> list[str]:
        """Tissues the model knows, in registry order."""
        return list(self._registered_names()[0])

    @property
    def genes(self) -> list[str]:
        """Genes the model predicts, in registry order."""
        return list(self._registered_names()[1])

    # -- persistence ----------------------------------------------------------------------------
    @classmethod
    def load(cls, dir_path, adata: MuData | None = None, *args, prefix: str | None = None, **kwargs):
        """Load a model saved with :meth:`save` (see :meth:`scvi.model.base.BaseModelClass.load`).

        A missing folder or ``model.pt`` raises :class:`FileNotFoundError`, and a file that is not
        a saved model raises :class:`ValueError`, each naming the file. Data given as ``adata``
        are checked like any new data (donors, tissues, genes, covariates; raw counts for count
        models).
        """
        import pickle
        import zipfile

        path = check_saved_model(dir_path, prefix)
        try:
            return super().load(dir_path, adata, *args, prefix=prefix, **kwargs)
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"The saved model file {path!r} is corrupted: {exc}") from exc
        except RuntimeError as exc:
            if "PytorchStreamReader" in str(exc) or "zip archive" in str(exc):
                raise ValueError(f"The saved model file {path!r} is corrupted: {exc}") from exc
            raise

    # -- training -----------------------------------------------------------------------------
    def train(
        self,
        max_epochs: int = 200,
        train_donors: Sequence[str] | None = None,
        validation_donors: Sequence[str] | None = None,
        split_key: str | None = None,
        lr: float = PAPER_LR,
        batch_size: int | None = None,
        early_stopping: bool = False,
        calibrate: bool | None = None,
        calibration_folds: int = 5,
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
        and ``"test"`` (held out; case and surrounding spaces ignored); else a random split by
        ``train_size``. A missing label, or one that looks like a misspelling (``"valid"``,
        ``"tst"``), is an error; any other label (e.g. ``"unassigned"``) is held out with a warning.

        Training refuses to start when no training donor gave two tissues. A minibatch whose
        donors all gave a single tissue has no targets and adds zero loss.

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
            Donors per minibatch. ``None``: the paper's 63, or fewer in cohorts of under 315 training
            donors so that an epoch still takes 5 optimizer steps (``min(63, max(16, n_train // 5))``):
            with 80 training donors and 63 per batch, 200 epochs are 400 steps, too few to fit.
        early_stopping
            Stop when ``elbo_validation`` (the validation loss) stops improving; see
            :class:`scvi.train.Trainer` for ``early_stopping_patience`` etc.
        calibrate
            After training, fit per tissue the weights of the decoder and of the gene-level skip on
            held-out donors (:meth:`calibrate`; Gaussian likelihood only). ``None``: below 200
            training donors, where the decoder overfits (larger cohorts gained nothing on GTEx and
            lost eQTL signal in ``benchmarks/eqtl_simulated.py``, 91 -> 80 true eGenes; see the FAQ).
        calibration_folds
            Folds of the training donors the calibration is cross-fitted over: as many copies of
            the model are trained, with these arguments (but no ``callbacks`` or ``logger``), each
            without one fold, and kept as an ensemble (``model.fold_models_ = None`` drops it; see the
            FAQ on small cohorts; multi-process training falls back to ``0``). ``0`` fits on the
            validation donors alone (if any).
        accelerator, devices
            Passed to :class:`scvi.train.Trainer`.
        train_size, validation_size
            Random split fractions when no donor split is given.
        datasplitter_kwargs
            Passed to :class:`scvi.dataloaders.DataSplitter`.
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan`; overrides the optimizer settings above.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`. ``precision="bf16-mixed"`` (opt-in) trains in
            bfloat16 autocast: about 2x faster on CPUs with AVX512-BF16 or AMX at whole-transcriptome
            scale, slower on others; see the Performance page.
        """
        fold_kwargs = {k: v for k, v in locals().items() if k in FOLD_TRAIN_ARGS} | trainer_kwargs  # copies'
        max_epochs = check_positive_int(max_epochs, "max_epochs")
        check_positive_number(lr, "lr")
        check_fraction(train_size, "train_size")
        check_fraction(validation_size, "validation_size")
        datasplitter_kwargs = dict(datasplitter_kwargs or {})
        split = self._donor_split(train_donors, validation_donors, split_key)
        check_training_donors(
            np.asarray(self.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY)) > 0,
            None if split is None else split[0],
            None if split is None else split[1],
            self.adata.obs_names,
        )
        n_train = n_training_donors(split, self.adata.n_obs, train_size)
        calibrate = calibrates(calibrate, calibration_folds, n_train)  # checked before any training
        batch_size = (
            auto_batch_size(n_train) if batch_size is None else check_positive_int(batch_size, "batch_size")
        )
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
        from hyfa._quiet import log_every_n_steps, quiet_training  # hyfa/_quiet.py (#16)
        from hyfa.module._optim import adam_plan_kwargs  # torch's fused Adam: in place, no temporaries

        plan_kwargs = adam_plan_kwargs(lr, plan_kwargs)
        trainer_kwargs.setdefault(
            "log_every_n_steps",
            log_every_n_steps(n_train, batch_size, devices, trainer_kwargs.get("num_nodes", 1)),
        )
        self._forget_calibration()  # train the uncalibrated model alone; calibrate afresh below
        with quiet_training():  # only Lightning's messages about nothing a hyfa user can change
            runner = super().train(
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
        self._calibrate_after_training(calibrate, calibration_folds, fold_kwargs)
        return runner
