"""Registry keys and the names of the entries that registration adds to a MuData."""

from typing import NamedTuple


class _RegistryKeys(NamedTuple):
    X_KEY: str = "X"
    OBSERVED_KEY: str = "observed"
    INDICES_KEY: str = "ind_x"
    CAT_COVS_KEY: str = "extra_categorical_covs"
    CONT_COVS_KEY: str = "extra_continuous_covs"


#: Keys under which registered data reach the module through minibatches.
REGISTRY_KEYS = _RegistryKeys()

#: ``mdata.obsm`` entry: donors x tissues int32, the row of the donor's sample in each tissue (-1: none).
SAMPLES_OBSM_KEY = "_hyfa_samples"
#: ``mdata.obsm`` entry: donors x tissues, 1.0 where the donor has a sample of the tissue.
OBSERVED_OBSM_KEY = "_hyfa_observed"
#: ``mdata.obs`` column: the donor's row position, used to fix validation masks by donor.
INDICES_OBS_KEY = "_indices"
