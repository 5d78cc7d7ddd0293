"""Every use of scvi-tools beyond its documented model API lives here (tested in ``test_scvi_internals``).

scvi-tools' MuData fields slice each modality by row position and refuse modalities with
different donors. HYFA instead registers two small donors x tissues arrays that
:mod:`hyfa.model._registration` aligns to ``mdata.obs_names`` by donor name: the row of each
donor's sample in each tissue, and the observation mask. They are built in the fields'
pre-register step, which scvi-tools runs both when registering and when transferring a registry
(``HYFA.load`` and any new MuData passed to a trained model), so new data are always aligned the
same way. :class:`HYFADataManager` makes scvi-tools' minibatches read each sample's expression
from its tissue's own matrix (:class:`~hyfa.model._registration.TissueBlocks`), so the expression
is never copied whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from mudata import MuData
from scvi.data import AnnDataManager, AnnDataManagerValidationCheck, AnnTorchDataset
from scvi.data.fields import (
    BaseMuDataWrapperClass,
    CategoricalJointObsField,
    MuDataNumericalJointObsField,
    MuDataWrapper,
    NumericalObsField,
    ObsmField,
)
from torch.utils.data import Subset

from hyfa._constants import INDICES_OBS_KEY, OBSERVED_OBSM_KEY, REGISTRY_KEYS, SAMPLES_OBSM_KEY

from ._registration import TissueBlocks, check_counts, check_expression, observed_mask, sample_rows
from ._validation import _preview, check_covariates, check_donor_names

#: Unpaired donors are expected: the stacked arrays, not scvi-tools, align them by name.
VALIDATION_CHECKS = AnnDataManagerValidationCheck(check_fully_paired_mudata=False)

TISSUES_KEY = "tissues"
GENES_KEY = "genes"
LAYER_KEY = "layer"


class _TissueField(BaseMuDataWrapperClass):
    """Top-level ``mdata.obsm`` field rebuilt from the tissues on every registration and transfer."""

    obsm_key: str

    def __init__(
        self,
        registry_key: str,
        tissues: Sequence[str],
        genes: Sequence[str],
        layer: str | None,
        all_modalities: bool,
    ):
        super().__init__(mod_key=None)
        self._adata_field = ObsmField(registry_key, self.obsm_key, correct_data_format=False)
        self.tissues = list(tissues)
        self.genes = list(genes)
        self.layer = layer
        self.all_modalities = all_modalities

    def build(self, mdata: MuData):
        """Return the array to store in ``mdata.obsm[self.obsm_key]``."""
        raise NotImplementedError

    def preregister(self, mdata: MuData) -> None:
        """Write the donor-aligned array into ``mdata.obsm``."""
        mdata.obsm[self.obsm_key] = self.build(mdata)

    def register_field(self, mdata: MuData) -> dict:
        """Register the field and remember the tissues and genes it was built from."""
        state = super().register_field(mdata)
        return self._state(state)

    def _state(self, state: dict) -> dict:
        return {**state, TISSUES_KEY: list(self.tissues), GENES_KEY: list(self.genes), LAYER_KEY: self.layer}

    def transfer_field(self, state_registry: dict, mdata_target: MuData, **kwargs) -> dict:
        """Rebuild the field on new data in the registered tissue and gene order (checked by :class:`HYFADataManager`)."""
        self.tissues = list(state_registry[TISSUES_KEY])
        self.genes = list(state_registry[GENES_KEY])
        state = super().transfer_field(state_registry, mdata_target, **kwargs)
        return self._state(state)


class SampleRowsField(_TissueField):
    """Registers the donors x tissues table of sample rows; minibatches turn it into expression."""

    obsm_key = SAMPLES_OBSM_KEY

    def build(self, mdata: MuData) -> np.ndarray:
        """Return the sample rows (see :func:`hyfa.model._registration.sample_rows`), checking the values."""
        check_expression(TissueBlocks(mdata, self.tissues, self.genes, self.layer), self.genes)
        return sample_rows(mdata, self.tissues)


class ObservedTissuesField(_TissueField):
    """Registers the donors x tissues observation mask."""

    obsm_key = OBSERVED_OBSM_KEY

    def build(self, mdata: MuData) -> np.ndarray:
        """Return the observation mask (see :func:`hyfa.model._registration.observed_mask`)."""
        return observed_mask(sample_rows(mdata, self.tissues))


def check_transfer(
    mdata: MuData, tissues: Sequence[str], genes: Sequence[str], strict_tissues: bool = True
) -> None:
    """Raise if new data lack genes the model was trained on, or (``strict_tissues``) hold unknown tissues.

    A registered tissue may be absent (its donors count as unobserved there), so that new
    donors measured in few tissues can be imputed. ``strict_tissues`` is set when the model was
    set up on every modality, so that an unknown modality is a tissue the model cannot use.
    """
    unknown = [t for t in mdata.mod if t not in tissues] if strict_tissues else []
    if unknown:
        raise ValueError(
            f"The data hold tissues the model was not trained on: {_preview(unknown)}. "
            f"Known tissues: {_preview(tissues, 60)}. Drop them from the MuData first."
        )
    genes = pd.Index(genes)
    for tissue in (t for t in tissues if t in mdata.mod):
        missing = genes[mdata.mod[tissue].var_names.get_indexer(genes) < 0]
        if len(missing):
            raise ValueError(
                f"Tissue {tissue!r} lacks {len(missing)} genes the model was trained on: {_preview(missing)}."
            )


class _RegistryOrderCategoricalJointObsField(CategoricalJointObsField):
    """scvi-tools' joint categorical ``obs`` field, whose codes on new data follow the registry's category order.

    scvi-tools casts new data to the registered categories with ``astype``, which keeps a pandas
    categorical column's own codes when it holds the same categories in another order (unordered
    categoricals compare equal). Casting the values, not the codes, makes the codes follow the
    registry whatever the column's dtype.
    """

    def _make_array_categorical(self, adata, category_dict: dict | None = None) -> dict:
        if category_dict is not None:
            df = getattr(adata, self.attr_name)[self.attr_key]  # scvi-tools' own copy, in obsm
            for key in self.attr_keys:
                if isinstance(df[key].dtype, pd.CategoricalDtype):
                    df[key] = np.asarray(df[key], dtype=object)
        return super()._make_array_categorical(adata, category_dict=category_dict)


#: Donor-level categorical covariates (``mdata.obs`` columns -> ``obsm["_scvi_extra_categorical_covs"]``).
CategoricalCovariatesField = MuDataWrapper(_RegistryOrderCategoricalJointObsField)
#: Donor-level continuous covariates (``mdata.obs`` columns -> ``obsm["_scvi_extra_continuous_covs"]``).
ContinuousCovariatesField = MuDataNumericalJointObsField


def check_new_data(mdata: MuData, source_registry: dict) -> None:
    """Raise, before anything is written, if new data (or data given to ``HYFA.load``) do not fit a registry.

    Checks the donors (unique, present in ``mdata.obs_names``), the tissues and genes
    (:func:`check_transfer`) and the covariates (present for every donor, finite, categories
    known to the model). Expression values are checked while the sample table is built.
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"HYFA expects a MuData with one modality per tissue, got {type(mdata).__name__}.")
    fields = source_registry["field_registries"]
    state = fields[REGISTRY_KEYS.X_KEY]["state_registry"]
    tissues, genes = list(state[TISSUES_KEY]), list(state[GENES_KEY])
    setup_args = source_registry.get("setup_args", {})
    check_transfer(mdata, tissues, genes, strict_tissues=setup_args.get("tissues") is None)
    check_donor_names(mdata, tissues)
    layer = state.get(LAYER_KEY)
    for tissue in (t for t in tissues if t in mdata.mod):
        if layer is not None and layer not in mdata.mod[tissue].layers:
            raise KeyError(
                f"Layer {layer!r} (registered) not found in tissue {tissue!r} (layers: {list(mdata.mod[tissue].layers)})."
            )
    cat_state = fields.get(REGISTRY_KEYS.CAT_COVS_KEY, {}).get("state_registry", {})
    check_covariates(
        mdata,
        setup_args.get("categorical_covariate_keys"),
        "categorical",
        categories=cat_state.get("mappings"),
    )
    check_covariates(mdata, setup_args.get("continuous_covariate_keys"), "continuous")


def _add_donor_indices(field: BaseMuDataWrapperClass, mdata: MuData) -> None:
    mdata.obs[INDICES_OBS_KEY] = np.arange(mdata.n_obs)


#: ``mdata.obs["_indices"]``, written on every registration and transfer.
DonorIndicesField = MuDataWrapper(NumericalObsField, preregister_fn=_add_donor_indices)


def check_new_counts(mdata: MuData, source_registry: dict) -> None:
    """Raise if new data for a count model do not fit its registry or hold values that are not raw counts."""
    check_new_data(mdata, source_registry)
    state = source_registry["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
    blocks = TissueBlocks(mdata, state[TISSUES_KEY], state[GENES_KEY], state.get(LAYER_KEY))
    check_counts(blocks, state[GENES_KEY])


def registered_tissues_and_genes(adata_manager) -> tuple[list[str], list[str]]:
    """Return the tissues and genes recorded in a manager's registry."""
    state = adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY)
    return list(state[TISSUES_KEY]), list(state[GENES_KEY])


def tissue_blocks(adata_manager) -> TissueBlocks:
    """Return the reader of the registered expression of a manager's MuData."""
    state = adata_manager.get_state_registry(REGISTRY_KEYS.X_KEY)
    return TissueBlocks(adata_manager.adata, state[TISSUES_KEY], state[GENES_KEY], state.get(LAYER_KEY))


def sample_rows_of(adata_manager) -> np.ndarray:
    """Return the registered donors x tissues sample rows (-1: no sample) of a manager's MuData."""
    return np.asarray(adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY))


class _TissueTorchDataset(AnnTorchDataset):
    """scvi-tools' dataset whose ``X`` minibatch is the donors' expression, read from the tissues."""

    def __getitem__(self, indexes):
        data = super().__getitem__(indexes)
        if REGISTRY_KEYS.X_KEY in data:
            if not hasattr(self, "_blocks"):
                self._blocks = tissue_blocks(self.adata_manager)
            data[REGISTRY_KEYS.X_KEY] = self._blocks.gather(data[REGISTRY_KEYS.X_KEY])
        return data


class HYFADataManager(AnnDataManager):
    """:class:`scvi.data.AnnDataManager` whose torch datasets serve expression from the tissue matrices.

    New data (a transfer of the registry, as at imputation or ``HYFA.load``) are checked whole by
    :func:`check_new_data` before any field writes to them.
    """

    def register_fields(self, adata, source_registry: dict | None = None, **transfer_kwargs):
        """Register (or, with ``source_registry``, transfer) the fields; see :meth:`scvi.data.AnnDataManager.register_fields`."""
        if source_registry is not None:
            check_new_data(adata, source_registry)
        return super().register_fields(adata, source_registry, **transfer_kwargs)

    def create_torch_dataset(self, indices=None, data_and_attributes=None, load_sparse_tensor=False):
        """Return the torch dataset of the registered MuData (see :meth:`scvi.data.AnnDataManager.create_torch_dataset`)."""
        dataset = _TissueTorchDataset(
            self, getitem_tensors=data_and_attributes, load_sparse_tensor=load_sparse_tensor
        )
        return dataset if indices is None else Subset(dataset, indices)
