"""Tests of the GTEx-style normalization."""

from __future__ import annotations

import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from rnanorm import TMM
from scipy import stats

from hyfa.data import gtex_acmg59
from hyfa.pp import normalize_gtex

FAILING = {"WT1": 15, "OTC": 10, "PCSK9": 2, "CACNA1S": 1}


@pytest.fixture(scope="module")
def normalized():
    mdata = gtex_acmg59("paper")
    raw = {t: a.X.copy() for t, a in mdata.mod.items()}
    assert normalize_gtex(mdata) is None
    return mdata, raw


def test_common_genes(normalized):
    mdata, _ = normalized
    reference = mdata["Lung"].var["common"]
    assert reference.dtype == bool
    assert int(reference.sum()) == 55
    assert set(reference.index[~reference]) == set(FAILING)
    for tissue, adata in mdata.mod.items():
        pd.testing.assert_series_equal(adata.var["common"], reference, check_names=False, obj=tissue)


def test_failing_genes_per_tissue(normalized):
    mdata, _ = normalized
    failing = pd.Series(0, index=mdata["Lung"].var_names)
    for adata in mdata.mod.values():
        assert adata.var["expressed"].dtype == bool
        failing += ~adata.var["expressed"]
    assert failing[failing > 0].to_dict() == FAILING
    # e.g. WT1 is expressed in few tissues (ovary, uterus, ...), OTC mainly in liver and intestine
    assert mdata["Ovary"].var.loc["WT1", "expressed"]
    assert not mdata["Whole_Blood"].var.loc["WT1", "expressed"]
    assert mdata["Liver"].var.loc["OTC", "expressed"]


def test_raw_counts_kept(normalized):
    mdata, raw = normalized
    for tissue, adata in mdata.mod.items():
        assert adata.X.dtype == np.int32
        np.testing.assert_array_equal(adata.X, raw[tissue])


def test_standard_normal(normalized):
    mdata, _ = normalized
    for tissue, adata in mdata.mod.items():
        values = adata.layers["normalized"]
        assert values.dtype == np.float32
        assert np.isfinite(values).all()
        kept = values[:, adata.var["expressed"].to_numpy()]
        assert np.abs(kept.mean(axis=0)).max() < 0.1, tissue
        sd = kept.std(axis=0)
        assert sd.min() > 0.8 and sd.max() < 1.0, tissue
    # a gene without ties: mean exactly 0 and the values are the expected normal quantiles
    lung = mdata["Lung"]
    values = lung[:, "BRCA2"].layers["normalized"].ravel()
    n = lung.n_obs
    np.testing.assert_allclose(np.sort(values), stats.norm.ppf(np.arange(1, n + 1) / (n + 1)), atol=1e-6)


def test_ranks_follow_tmm(normalized):
    """Within a tissue, each gene's normalized values rank samples as TMM-normalized expression does."""
    mdata, raw = normalized
    for tissue in ("Lung", "Liver", "Whole_Blood", "Testis"):
        adata = mdata[tissue]
        counts = raw[tissue].astype(np.float64)
        expressed = adata.var["expressed"].to_numpy()
        kept = counts[:, expressed]
        factors = TMM().fit(kept).get_norm_factors(kept)
        tmm = counts / (kept.sum(axis=1) * factors)[:, None] * 1e6
        expected = stats.rankdata(tmm, axis=0)
        observed = stats.rankdata(adata.layers["normalized"], axis=0)
        np.testing.assert_array_equal(observed, expected, err_msg=tissue)
        # and differ from the ranks of raw counts (TMM changes the order)
        assert not np.array_equal(stats.rankdata(counts, axis=0), expected)


def test_uns(normalized):
    mdata, _ = normalized
    params = mdata.uns["normalize_gtex"]
    assert params["min_reads"] == 6
    assert params["min_fraction"] == 0.2
    assert params["key_added"] == "normalized"
    assert "tpm_layer" not in params


# --------------------------------------------------------------------------------------------
# small synthetic data
# --------------------------------------------------------------------------------------------
def make_mdata(seed=0, n_genes=6, tissues=("A", "B")):
    rng = np.random.default_rng(seed)
    mods = {}
    for k, tissue in enumerate(tissues):
        n = 20 + 5 * k
        X = rng.poisson(rng.uniform(20, 200, size=n_genes), size=(n, n_genes)).astype(np.int64)
        X[:, 0] = 0
        X[:3, 0] = 10  # detected in 3 samples: less than 20%
        obs = pd.DataFrame(index=[f"d{i}" for i in range(n)])
        var = pd.DataFrame(index=[f"g{g}" for g in range(n_genes)])
        mods[tissue] = ad.AnnData(X=X, obs=obs, var=var)
    with md.set_options(pull_on_update=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        return md.MuData(mods)


def test_copy_leaves_input():
    mdata = make_mdata()
    out = normalize_gtex(mdata, copy=True, key_added="int")
    assert out is not mdata
    assert "int" in out["A"].layers and "int" not in mdata["A"].layers
    assert "expressed" not in mdata["A"].var.columns
    assert "normalize_gtex" not in mdata.uns
    assert out.obs_names.equals(mdata.obs_names)


def test_thresholds():
    mdata = make_mdata()
    n_detected = (mdata["A"].X[:, 0] >= 6).sum()
    fraction = n_detected / mdata["A"].n_obs
    out = normalize_gtex(mdata, copy=True, min_fraction=fraction)
    assert out["A"].var.loc["g0", "expressed"]
    out = normalize_gtex(mdata, copy=True, min_fraction=fraction + 0.01)
    assert not out["A"].var.loc["g0", "expressed"]
    out = normalize_gtex(mdata, copy=True, min_fraction=fraction, min_reads=11)
    assert not out["A"].var.loc["g0", "expressed"]


def test_tpm_layer():
    mdata = make_mdata()
    for adata in mdata.mod.values():
        tpm = np.full(adata.shape, 5.0)
        tpm[:, 3] = 0.05  # below min_tpm everywhere
        adata.layers["tpm"] = tpm
    out = normalize_gtex(mdata, tpm_layer="tpm", copy=True)
    for adata in out.mod.values():
        assert not adata.var.loc["g3", "expressed"]
        assert adata.var.loc["g2", "expressed"]
    assert not out["A"].var.loc["g3", "common"]
    assert out.uns["normalize_gtex"]["tpm_layer"] == "tpm"
    assert normalize_gtex(mdata, copy=True)["A"].var.loc["g3", "expressed"]


def test_values_match_independent_computation():
    mdata = make_mdata()
    out = normalize_gtex(mdata, copy=True)
    for tissue, adata in out.mod.items():
        counts = mdata[tissue].X.astype(np.float64)
        expressed = adata.var["expressed"].to_numpy()
        assert expressed.tolist() == [False] + [True] * 5
        kept = counts[:, expressed]
        factors = TMM().fit(kept).get_norm_factors(kept)
        cpm = counts / (kept.sum(axis=1) * factors)[:, None] * 1e6
        expected = stats.norm.ppf(stats.rankdata(cpm, axis=0) / (len(cpm) + 1))
        np.testing.assert_allclose(adata.layers["normalized"], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.nan, r"Tissue 'B' \(.X\) has 1 NaN or infinite counts .* e.g. donor/gene d3/g2=nan"),
        (np.inf, r"Tissue 'B' \(.X\) has 1 NaN or infinite counts .* d3/g2=inf"),
        (-1.0, r"Tissue 'B' \(.X\) has 1 negative counts .* d3/g2=-1.0"),
        (2.5, r"Tissue 'B' \(.X\) has 1 non-integer counts .* d3/g2=2.5"),
    ],
)
def test_bad_counts(value, match):
    mdata = make_mdata()
    X = mdata["B"].X.astype(np.float64)
    X[3, 2] = value
    mdata["B"].X = X
    with pytest.raises(ValueError, match=match):
        normalize_gtex(mdata)
    assert "normalized" not in mdata["A"].layers


def test_negative_integer_counts():
    mdata = make_mdata()
    mdata["A"].X[5, 1] = -4
    with pytest.raises(ValueError, match=r"Tissue 'A' \(.X\) has 1 negative counts .* d5/g1=-4"):
        normalize_gtex(mdata)


def test_genes_differ():
    mdata = make_mdata()
    mdata.mod["B"] = mdata["B"][:, ["g0", "g1", "g2", "g3", "g4"]].copy()
    with md.set_options(pull_on_update=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        mdata.update()
    with pytest.raises(ValueError, match=r"tissue 'B' lacks 'g5'"):
        normalize_gtex(mdata)


def test_missing_tpm_layer():
    with pytest.raises(ValueError, match=r"Tissue 'A' has no layer 'tpm'"):
        normalize_gtex(make_mdata(), tpm_layer="tpm")


def test_bad_tpm_layer():
    mdata = make_mdata()
    for adata in mdata.mod.values():
        adata.layers["tpm"] = np.ones(adata.shape)
    mdata["B"].layers["tpm"][2, 4] = -1
    with pytest.raises(ValueError, match=r"Tissue 'B' \(layer 'tpm'\) has 1 negative values .* d2/g4=-1.0"):
        normalize_gtex(mdata, tpm_layer="tpm")


def test_nothing_expressed():
    with pytest.raises(ValueError, match=r"No gene passes the expression filter in tissue 'A'"):
        normalize_gtex(make_mdata(), min_reads=10**6)


def test_zero_library():
    mdata = make_mdata()
    mdata["A"].X[4] = 0
    with pytest.raises(ValueError, match=r"Tissue 'A': samples of donors 'd4' have no reads"):
        normalize_gtex(mdata)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_reads": -1}, "min_reads must be a non-negative number"),
        ({"min_fraction": 1.5}, "min_fraction must be between 0 and 1"),
        ({"min_tpm": np.nan}, "min_tpm must be a non-negative number"),
        ({"key_added": ""}, "key_added must be a non-empty string"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        normalize_gtex(make_mdata(), **kwargs)


def test_not_mudata():
    with pytest.raises(TypeError, match="expects a MuData"):
        normalize_gtex(ad.AnnData(np.ones((2, 2))))


# --------------------------------------------------------------------------------------------
# TMM computed once per tissue (#11) and tissues with too few samples (#15)
# --------------------------------------------------------------------------------------------
def test_tmm_factors_computed_once_per_tissue(monkeypatch):
    calls = []
    original = TMM._get_norm_factors

    def counting(self, X):
        calls.append(X.shape)
        return original(self, X)

    monkeypatch.setattr(TMM, "_get_norm_factors", counting)
    mdata = make_mdata(tissues=("A", "B", "C"))
    normalize_gtex(mdata)
    assert calls == [(20, 5), (25, 5), (30, 5)]  # one computation per tissue, on its expressed genes


def test_values_equal_fit_then_get_norm_factors():
    """Reusing the factors computed while fitting changes nothing, to the bit."""
    mdata = make_mdata(seed=4, n_genes=40, tissues=("A", "B", "C"))
    out = normalize_gtex(mdata, copy=True)
    for tissue, adata in out.mod.items():
        counts = mdata[tissue].X.astype(np.float64)
        kept = counts[:, adata.var["expressed"].to_numpy()]
        factors = TMM().fit(kept).get_norm_factors(kept)
        cpm = counts / (kept.sum(axis=1) * factors)[:, None] * 1e6
        expected = stats.norm.ppf(stats.rankdata(cpm, axis=0) / (len(cpm) + 1)).astype(np.float32)
        np.testing.assert_array_equal(adata.layers["normalized"], expected, err_msg=tissue)


def test_integer_counts_not_copied_to_float_in_checks(monkeypatch):
    """The checks work on the counts as stored: dense integer counts are not converted up front."""
    import hyfa.pp._normalize as normalize

    seen = []
    original = normalize._expressed

    def spy(mdata, tissue, counts, *args):
        seen.append((counts.dtype, counts is mdata.mod[tissue].X))
        return original(mdata, tissue, counts, *args)

    monkeypatch.setattr(normalize, "_expressed", spy)
    mdata = make_mdata()
    normalize_gtex(mdata)
    assert seen == [(np.dtype(np.int64), True), (np.dtype(np.int64), True)]


def _with_small_tissue(n_small):
    mdata = make_mdata()
    rng = np.random.default_rng(5)
    small = ad.AnnData(
        X=rng.poisson(50, size=(n_small, 6)).astype(np.int64),
        obs=pd.DataFrame(index=[f"d{i}" for i in range(n_small)]),
        var=pd.DataFrame(index=[f"g{g}" for g in range(6)]),
    )
    mods = {**mdata.mod, "Tiny": small}
    with md.set_options(pull_on_update=False), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        return md.MuData(mods)


@pytest.mark.parametrize(("n_small", "values"), [(1, [0.0]), (2, [-0.4307273, 0.4307273])])
def test_small_tissue_warns_and_is_normalized(n_small, values):
    mdata = _with_small_tissue(n_small)
    with pytest.warns(UserWarning, match=rf"fewer than 3 samples .*: 'Tiny' \({n_small}\)\. .*degenerate"):
        normalize_gtex(mdata)
    tiny = mdata["Tiny"].layers["normalized"]
    for column in tiny.T:
        np.testing.assert_allclose(np.sort(column), values, atol=1e-6)
    # the other tissues are unaffected by the small one
    reference = normalize_gtex(make_mdata(), copy=True)
    np.testing.assert_array_equal(mdata["A"].layers["normalized"], reference["A"].layers["normalized"])


def test_no_warning_with_three_samples():
    mdata = _with_small_tissue(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        normalize_gtex(mdata)
    assert np.isfinite(mdata["Tiny"].layers["normalized"]).all()
