"""Tests of the multi-tissue simulator."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from hyfa.data import simulate


@pytest.fixture(scope="module")
def default():
    return simulate()


def _observed_fraction(observed, n_donors, n_tissues):
    return sum(a.n_obs for a in observed.mod.values()) / (n_donors * n_tissues)


def test_layout(default):
    observed, truth = default
    tissues = [f"tissue_{t}" for t in range(10)]
    donors = [f"donor_{i}" for i in range(300)]
    assert list(observed.mod) == tissues
    assert list(truth.mod) == tissues
    assert list(observed.obs_names) == donors
    assert list(truth.obs_names) == donors
    assert list(observed.obs.columns) == []
    for tissue in tissues:
        obs_t, truth_t = observed[tissue], truth[tissue]
        assert list(obs_t.var_names) == [f"gene_{g}" for g in range(40)]
        assert obs_t.X.dtype == np.float32
        assert truth_t.X.dtype == np.float32
        assert truth_t.layers["mean"].dtype == np.float32
        assert list(truth_t.obs_names) == donors
        assert truth_t.shape == (300, 40)
        assert 0 < obs_t.n_obs < 300
    assert truth.obsm["latent"].shape == (300, 4)


def test_observed_equals_truth(default):
    observed, truth = default
    for tissue, adata in observed.mod.items():
        rows = truth[tissue].obs_names.get_indexer(adata.obs_names)
        assert (rows >= 0).all()
        np.testing.assert_array_equal(adata.X, truth[tissue].X[rows])


def test_noise_level(default):
    _, truth = default
    residuals = np.concatenate([(a.X - a.layers["mean"]).ravel() for a in truth.mod.values()])
    assert abs(residuals.std() - 0.3) < 0.01
    assert abs(residuals.mean()) < 0.01


def test_missingness_and_min_tissues(default):
    observed, _ = default
    assert abs((1 - _observed_fraction(observed, 300, 10)) - 0.66) < 0.03
    n_tissues = pd.Series(0, index=observed.obs_names)
    for adata in observed.mod.values():
        n_tissues[adata.obs_names] += 1
    assert n_tissues.min() >= 2


@pytest.mark.parametrize(("missing_rate", "min_tissues"), [(0.5, 1), (0.8, 3), (0.0, 2)])
def test_missingness_targets(missing_rate, min_tissues):
    observed, _ = simulate(
        n_donors=2000, n_tissues=20, n_genes=3, missing_rate=missing_rate, min_tissues=min_tissues
    )
    assert abs((1 - _observed_fraction(observed, 2000, 20)) - missing_rate) < 0.01
    n_tissues = pd.Series(0, index=observed.obs_names)
    for adata in observed.mod.values():
        n_tissues[adata.obs_names] += 1
    assert n_tissues.min() >= min_tissues
    assert observed.n_obs == 2000


def test_reproducible():
    a_obs, a_truth = simulate(n_donors=50, seed=3)
    b_obs, b_truth = simulate(n_donors=50, seed=3)
    c_obs, c_truth = simulate(n_donors=50, seed=4)
    for tissue in a_truth.mod:
        np.testing.assert_array_equal(a_truth[tissue].X, b_truth[tissue].X)
        assert a_obs[tissue].obs_names.equals(b_obs[tissue].obs_names)
        np.testing.assert_array_equal(a_obs[tissue].X, b_obs[tissue].X)
    assert not np.allclose(a_truth["tissue_0"].X, c_truth["tissue_0"].X)
    assert any(not a_obs[t].obs_names.equals(c_obs[t].obs_names) for t in a_obs.mod)


def test_nonlinear(default):
    """A linear map of the latent factors leaves a clear part of the noise-free signal unexplained."""
    _, truth = default
    z = np.c_[truth.obsm["latent"], np.ones(truth.n_obs)]
    for tissue in ("tissue_0", "tissue_5"):
        mean = truth[tissue].layers["mean"].astype(np.float64)
        coef = np.linalg.lstsq(z, mean, rcond=None)[0]
        r2 = 1 - (mean - z @ coef).var(axis=0).sum() / mean.var(axis=0).sum()
        assert 0.3 < r2 < 0.95


def test_tissues_share_donor_signal(default):
    """Tissues depend on the same donor factors, so they are predictable from each other."""
    _, truth = default
    a = truth["tissue_0"].layers["mean"].astype(np.float64)
    b = truth["tissue_1"].layers["mean"].astype(np.float64)
    design = np.c_[a, np.ones(len(a))]
    coef = np.linalg.lstsq(design, b, rcond=None)[0]
    assert 1 - (b - design @ coef).var() / b.var() > 0.5


def test_covariates():
    observed, truth = simulate(n_donors=200, covariates=True, seed=2)
    for mdata in (observed, truth):
        assert mdata.obs["age"].dtype == np.float64
        assert mdata.obs["age"].between(20, 70).all()
        assert isinstance(mdata.obs["sex"].dtype, pd.CategoricalDtype)
        assert set(mdata.obs["sex"]) == {"female", "male"}
    np.testing.assert_array_equal(observed.obs["age"], truth.obs["age"])
    # the covariates shift expression: age correlates with some gene of tissue 0
    mean = truth["tissue_0"].layers["mean"]
    corr = [abs(np.corrcoef(truth.obs["age"], mean[:, g])[0, 1]) for g in range(mean.shape[1])]
    assert max(corr) > 0.3
    assert "age" not in simulate(n_donors=20)[0].obs.columns


def test_fast():
    start = time.perf_counter()
    simulate()
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_donors": 0}, "n_donors must be a positive integer"),
        ({"n_genes": 2.5}, "n_genes must be a positive integer"),
        ({"missing_rate": 1.0}, r"missing_rate must be in \[0, 1\)"),
        ({"noise_sd": -1.0}, "noise_sd must be non-negative"),
        ({"min_tissues": 11}, "min_tissues must be an integer between 1 and n_tissues=10"),
        ({"missing_rate": 0.9, "min_tissues": 2}, "fewer than min_tissues=2"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(**kwargs)
