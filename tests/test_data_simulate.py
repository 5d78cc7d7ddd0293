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


# ---------------------------------------------------------------------------------------------------
# Regression: the Gaussian simulation is unchanged by the raw-count option (values from before it).


def test_gaussian_outputs_unchanged():
    observed, truth = simulate(n_donors=20, n_tissues=4, n_genes=5, seed=5, missing_rate=0.4)
    np.testing.assert_allclose(
        truth["tissue_2"].X[3], [1.1737492, 1.3909391, -0.9417226, -1.9493606, -1.1485671], rtol=1e-5
    )
    np.testing.assert_allclose(
        truth["tissue_2"].layers["mean"][3],
        [0.74350834, 0.9976742, -0.43922463, -2.0649555, -1.21086],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        truth.obsm["latent"][0], [-0.80193144, -1.3243589, -0.24836162, 0.42044523], rtol=1e-6
    )
    assert list(observed["tissue_1"].obs_names) == [
        f"donor_{i}" for i in (0, 1, 2, 3, 5, 6, 7, 9, 13, 15, 17, 18)
    ]
    assert "factors" not in truth.obsm
    assert list(truth["tissue_0"].layers) == ["mean"]
    assert list(truth["tissue_0"].obs.columns) == []
    assert "counts" not in truth.uns["simulate"]

    observed, truth = simulate(n_donors=20, n_tissues=4, n_genes=5, seed=5, missing_rate=0.4, covariates=True)
    np.testing.assert_allclose(
        truth["tissue_0"].X[0], [0.46775186, -0.7526691, -4.2929473, 1.981701, -1.750962], rtol=1e-5
    )
    assert list(observed["tissue_0"].obs_names) == [
        f"donor_{i}" for i in (0, 2, 4, 6, 7, 9, 11, 12, 15, 17, 18)
    ]
    assert truth.obs["age"].iloc[0] == pytest.approx(55.64451312832842)


# ---------------------------------------------------------------------------------------------------
# Raw counts of a mixture of cell types.


@pytest.fixture(scope="module")
def counts():
    return simulate(n_donors=200, counts=True, seed=0)


def test_counts_layout(counts):
    observed, truth = counts
    assert truth.obsm["factors"].shape == (200, 4)
    assert truth.obsm["factors"].dtype == np.float32
    np.testing.assert_array_equal(truth.obsm["factors"], truth.obsm["latent"])  # no covariates
    params = truth.uns["simulate"]
    assert params["counts"] is True
    assert params["cell_types"] == [f"cell_type_{c}" for c in range(4)]
    assert params["cell_type_fractions"].shape == (10, 4)
    np.testing.assert_allclose(params["cell_type_fractions"].sum(axis=1), 1.0)
    for tissue, adata in truth.mod.items():
        assert adata.X.dtype == np.float32
        assert set(adata.layers) == {"mean", "proportions", "tissue_effect"}
        assert all(layer.dtype == np.float32 for layer in adata.layers.values())
        assert adata.obs["library_size"].between(1e4, 1e6).all()
        assert observed[tissue].X.dtype == np.float32
        assert list(observed[tissue].obs.columns) == []


def test_counts_are_integers_with_the_right_mean(counts):
    observed, truth = counts
    x = np.stack([a.X for a in truth.mod.values()]).astype(np.float64)
    mean = np.stack([a.layers["mean"] for a in truth.mod.values()]).astype(np.float64)
    assert (x >= 0).all()
    np.testing.assert_array_equal(x, np.round(x))
    assert x.max() > 1000  # really counts, not proportions
    # unbiased: the standardized residuals average to 0 and the totals match
    assert abs(((x - mean) / np.sqrt(mean + mean**2 / 10.0)).mean()) < 0.01
    assert abs(x.sum() / mean.sum() - 1) < 0.01
    # negative-binomial variance mu + mu^2 / theta with theta = 10
    inverse_theta = (((x - mean) ** 2 - mean) / mean**2).mean()
    assert abs(inverse_theta - 0.1) < 0.01
    for tissue, adata in observed.mod.items():
        rows = truth[tissue].obs_names.get_indexer(adata.obs_names)
        np.testing.assert_array_equal(adata.X, truth[tissue].X[rows])


def test_counts_proportions(counts):
    _, truth = counts
    for adata in truth.mod.values():
        proportions = adata.layers["proportions"].astype(np.float64)
        assert (proportions > 0).all()
        np.testing.assert_allclose(proportions.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(
            adata.layers["mean"], adata.obs["library_size"].to_numpy()[:, None] * proportions, rtol=1e-5
        )
    # realistically spread: mean proportions of genes span more than two orders of magnitude
    proportions = truth["tissue_0"].layers["proportions"].mean(axis=0)
    assert proportions.max() / proportions.min() > 100
    # and they vary across donors, through the donors' factors
    log_p = np.log(truth["tissue_0"].layers["proportions"].astype(np.float64))
    assert np.median(log_p.std(axis=0)) > 0.4


def test_counts_keep_the_gaussian_design():
    """With counts the same donors are observed, with the same factors, and the tissue effect is the Gaussian mean."""
    g_obs, g_truth = simulate(n_donors=50, seed=7, covariates=True)
    c_obs, c_truth = simulate(n_donors=50, seed=7, covariates=True, counts=True)
    np.testing.assert_array_equal(g_truth.obsm["latent"], c_truth.obsm["latent"])
    assert not np.allclose(c_truth.obsm["factors"], c_truth.obsm["latent"])  # covariates shift them
    for tissue in g_obs.mod:
        assert g_obs[tissue].obs_names.equals(c_obs[tissue].obs_names)
        np.testing.assert_array_equal(g_truth[tissue].layers["mean"], c_truth[tissue].layers["tissue_effect"])
    np.testing.assert_array_equal(g_truth.obs["age"], c_truth.obs["age"])


def test_counts_reproducible():
    a_obs, a_truth = simulate(n_donors=30, counts=True, seed=3)
    b_obs, b_truth = simulate(n_donors=30, counts=True, seed=3)
    _, c_truth = simulate(n_donors=30, counts=True, seed=4)
    for tissue in a_truth.mod:
        np.testing.assert_array_equal(a_truth[tissue].X, b_truth[tissue].X)
        np.testing.assert_array_equal(a_obs[tissue].X, b_obs[tissue].X)
        np.testing.assert_array_equal(a_truth[tissue].layers["mean"], b_truth[tissue].layers["mean"])
    assert not np.allclose(a_truth["tissue_0"].X, c_truth["tissue_0"].X)


def test_counts_options():
    _, truth = simulate(
        n_donors=400,
        n_tissues=3,
        missing_rate=0.3,
        counts=True,
        n_cell_types=2,
        library_size=(50, 50),
        theta=1e6,
    )
    assert truth.uns["simulate"]["cell_types"] == ["cell_type_0", "cell_type_1"]
    assert truth.uns["simulate"]["cell_type_fractions"].shape == (3, 2)
    np.testing.assert_allclose(truth["tissue_1"].obs["library_size"], 50.0)
    # nearly Poisson: variance close to the mean (a negative binomial with theta=10 would give about 1.4)
    x, mean = truth["tissue_1"].X.astype(np.float64), truth["tissue_1"].layers["mean"].astype(np.float64)
    assert abs(((x - mean) ** 2).sum() / mean.sum() - 1) < 0.1
    _, default_theta = simulate(
        n_donors=400, n_tissues=3, missing_rate=0.3, counts=True, n_cell_types=2, library_size=(50, 50)
    )
    x, mean = (default_theta["tissue_1"].X.astype(np.float64), default_theta["tissue_1"].layers["mean"])
    assert ((x - mean) ** 2).sum() / mean.sum() > 1.2


def test_counts_fast():
    start = time.perf_counter()
    simulate(counts=True)
    assert time.perf_counter() - start < 1.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_cell_types": 0}, "n_cell_types must be a positive integer"),
        ({"library_size": (10, 1)}, "library_size must satisfy 0 < low <= high"),
        ({"library_size": 5}, r"library_size must be a pair \(low, high\)"),
        ({"theta": 0.0}, "theta must be a positive number"),
        ({"seed": -1}, "seed must be a non-negative integer"),
    ],
)
def test_bad_count_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(n_donors=10, counts=True, **kwargs)


def test_shared_gene_effects_are_the_same_in_every_tissue():
    plain, _ = simulate(n_donors=40, n_genes=12, seed=3)
    shared, truth = simulate(n_donors=40, n_genes=12, seed=3, shared_gene_sd=0.5)
    differences = []
    for tissue in plain.mod:
        assert list(shared[tissue].obs_names) == list(plain[tissue].obs_names)  # same observed pairs
        differences.append(
            pd.DataFrame(shared[tissue].X - plain[tissue].X, index=plain[tissue].obs_names).reindex(
                truth.obs_names
            )
        )
    stacked = np.stack([d.to_numpy() for d in differences])  # tissues x donors x genes, NaN where missing
    spread = np.nanmax(stacked, axis=0) - np.nanmin(stacked, axis=0)
    np.testing.assert_allclose(spread[~np.isnan(spread)], 0.0, atol=1e-5)  # one effect per donor x gene
    assert 0.4 < np.nanstd(stacked) < 0.6
    with pytest.raises(ValueError, match="shared_gene_sd"):
        simulate(n_donors=20, counts=True, shared_gene_sd=0.5)
