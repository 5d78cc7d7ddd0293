"""Every use of scvi-tools beyond its documented model API lives here (tested in ``test_scvi_internals``).

scvi-tools' MuData fields slice each modality by row position and refuse modalities with
different donors. HYFA instead registers two arrays that :mod:`hyfa.model._registration` aligns
to ``mdata.obs_names`` by donor name. They are built in the fields' pre-register step, which
scvi-tools runs both when registering and when transferring a registry (``HYFA.load`` and any
new MuData passed to a trained model), so new data are always stacked the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mudata import MuData
from scvi.data import AnnDataManagerValidationCheck
from scvi.data.fields import BaseMuDataWrapperClass, MuDataWrapper, NumericalObsField, ObsmField

from hyfa._constants import EXPRESSION_OBSM_KEY, INDICES_OBS_KEY, OBSERVED_OBSM_KEY, REGISTRY_KEYS

from ._registration import _preview, check_expression, observed_mask, stack_tissues

#: Unpaired donors are expected: the stacked arrays, not scvi-tools, align them by name.
VALIDATION_CHECKS = AnnDataManagerValidationCheck(check_fully_paired_mudata=False)

TISSUES_KEY = "tissues"
GENES_KEY = "genes"


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
        return {**state, TISSUES_KEY: list(self.tissues), GENES_KEY: list(self.genes)}

    def transfer_field(self, state_registry: dict, mdata_target: MuData, **kwargs) -> dict:
        """Rebuild the field on new data in the registered tissue and gene order."""
        self.tissues = list(state_registry[TISSUES_KEY])
        self.genes = list(state_registry[GENES_KEY])
        check_transfer(mdata_target, self.tissues, self.genes, strict_tissues=self.all_modalities)
        state = super().transfer_field(state_registry, mdata_target, **kwargs)
        return {**state, TISSUES_KEY: list(self.tissues), GENES_KEY: list(self.genes)}


class TissueExpressionField(_TissueField):
    """Registers the sparse donors x (tissues * genes) expression stack."""

    obsm_key = EXPRESSION_OBSM_KEY

    def build(self, mdata: MuData):
        """Return the stacked expression (see :func:`hyfa.model._registration.stack_tissues`)."""
        present = [t for t in self.tissues if t in mdata.mod]
        check_expression(mdata, present, self.genes, self.layer)
        return stack_tissues(mdata, self.tissues, self.genes, self.layer)


class ObservedTissuesField(_TissueField):
    """Registers the donors x tissues observation mask."""

    obsm_key = OBSERVED_OBSM_KEY

    def build(self, mdata: MuData) -> np.ndarray:
        """Return the observation mask (see :func:`hyfa.model._registration.observed_mask`)."""
        return observed_mask(mdata, self.tissues)


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
    for tissue in (t for t in tissues if t in mdata.mod):
        missing = [g for g in genes if g not in set(mdata.mod[tissue].var_names)]
        if missing:
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
