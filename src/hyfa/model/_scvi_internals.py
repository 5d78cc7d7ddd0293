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
from scvi.data.fields import BaseMuDataWrapperClass, MuDataWrapper, NumericalObsField, ObsmField
from torch.utils.data import Subset

from hyfa._constants import INDICES_OBS_KEY, OBSERVED_OBSM_KEY, REGISTRY_KEYS, SAMPLES_OBSM_KEY

from ._registration import TissueBlocks, _preview, check_expression, observed_mask, sample_rows

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
        return {**state, TISSUES_KEY: list(self.tissues), GENES_KEY: list(self.genes), LAYER_KEY: self.layer}

    def transfer_field(self, state_registry: dict, mdata_target: MuData, **kwargs) -> dict:
        """Rebuild the field on new data in the registered tissue and gene order."""
        self.tissues = list(state_registry[TISSUES_KEY])
        self.genes = list(state_registry[GENES_KEY])
        check_transfer(mdata_target, self.tissues, self.genes, strict_tissues=self.all_modalities)
        state = super().transfer_field(state_registry, mdata_target, **kwargs)
        return {**state, TISSUES_KEY: list(self.tissues), GENES_KEY: list(self.genes), LAYER_KEY: self.layer}


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


def _add_donor_indices(field: BaseMuDataWrapperClass, mdata: MuData) -> None:
    mdata.obs[INDICES_OBS_KEY] = np.arange(mdata.n_obs)


#: ``mdata.obs["_indices"]``, written on every registration and transfer.
DonorIndicesField = MuDataWrapper(NumericalObsField, preregister_fn=_add_donor_indices)


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
    """:class:`scvi.data.AnnDataManager` whose torch datasets serve expression from the tissue matrices."""

    def create_torch_dataset(self, indices=None, data_and_attributes=None, load_sparse_tensor=False):
        """Return the torch dataset of the registered MuData (see :meth:`scvi.data.AnnDataManager.create_torch_dataset`)."""
        dataset = _TissueTorchDataset(
            self, getitem_tensors=data_and_attributes, load_sparse_tensor=load_sparse_tensor
        )
        return dataset if indices is None else Subset(dataset, indices)
