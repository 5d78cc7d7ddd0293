"""Shared fixtures: small multi-tissue MuData with unpaired donors, and a tiny model configuration."""

import logging
import warnings

import pytest
import scvi
from hyfa_testing import TINY, make_unpaired_mudata

import hyfa

scvi.settings.verbosity = logging.WARNING
warnings.filterwarnings("ignore", message=".*pull_on_update.*")
warnings.filterwarnings("ignore", message="Cannot join columns with the same name.*")


@pytest.fixture
def unpaired():
    return make_unpaired_mudata()


@pytest.fixture(scope="session")
def tiny():
    return dict(TINY)


@pytest.fixture
def trained(unpaired):
    """Return (model, mdata): a tiny HYFA trained for 3 epochs (seed 0) on :func:`unpaired`."""
    mdata, _, _ = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=3, batch_size=16)
    return model, mdata
