"""Fails loudly if the scvi-tools internals that hyfa relies on change (see hyfa.model._scvi_internals)."""

import inspect

import numpy as np
from hyfa_testing import TINY
from scvi.data import AnnDataManagerValidationCheck
from scvi.data.fields import BaseMuDataWrapperClass
from scvi.dataloaders import DataSplitter
from scvi.model.base import BaseModelClass

import hyfa
from hyfa._constants import REGISTRY_KEYS


def test_mudata_wrapper_runs_preregister_on_register_and_transfer():
    src = inspect.getsource(BaseMuDataWrapperClass.register_field) + inspect.getsource(
        BaseMuDataWrapperClass.transfer_field
    )
    assert src.count("self.preregister(") == 2, "scvi-tools no longer pre-registers in both paths"


def test_pairing_check_can_be_disabled():
    check = AnnDataManagerValidationCheck(check_fully_paired_mudata=False)
    assert check.check_fully_paired_mudata is False


def test_model_base_class_hooks_exist():
    for name in [
        "_make_data_loader",
        "_validate_anndata",
        "_get_init_params",
        "register_manager",
        "get_anndata_manager",
        "_get_setup_method_args",
    ]:
        assert hasattr(BaseModelClass, name), name
    assert "external_indexing" in inspect.signature(DataSplitter.__init__).parameters
    assert "indices" in inspect.signature(BaseModelClass._make_data_loader).parameters


def test_saved_registry_layout(unpaired, tmp_path):
    """HYFA.setup_mudata reads tissues and genes from a saved registry at this path."""
    mdata, _, _ = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    state = model.registry_["field_registries"][REGISTRY_KEYS.X_KEY]["state_registry"]
    assert state["tissues"] == model.tissues and state["genes"] == model.genes
    observed = model.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY)
    assert observed.shape == (mdata.n_obs, len(model.tissues))
    assert np.array_equal(np.asarray(observed).sum(0), [mdata.mod[t].n_obs for t in model.tissues])
