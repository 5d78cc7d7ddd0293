"""Shared fixtures: small multi-tissue MuData with unpaired donors, and a tiny model configuration."""

import logging
import warnings

import pytest
import scvi
from hyfa_testing import TINY, make_unpaired_mudata

scvi.settings.verbosity = logging.WARNING
warnings.filterwarnings("ignore", message=".*pull_on_update.*")
warnings.filterwarnings("ignore", message="Cannot join columns with the same name.*")


@pytest.fixture
def unpaired():
    return make_unpaired_mudata()


@pytest.fixture(scope="session")
def tiny():
    return dict(TINY)
