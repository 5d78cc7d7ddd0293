"""Tests of the long-format (samples x genes) <-> MuData conversion."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from hyfa.data import from_long, simulate, to_long


def make_long(sparse_x: bool = False, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    donors = [f"D{i}" for i in range(12)]
    tissues = ["Lung", "Liver", "Brain"]
    pairs = [(d, t) for d in donors for t in tissues if rng.random() < 0.6]
    n, n_genes = len(pairs), 7
    obs = pd.DataFrame(
        {
            "Participant ID": [d for d, _ in pairs],
            "Tissue": pd.Categorical([t for _, t in pairs], categories=tissues),
            "rin": rng.uniform(5, 10, size=n),
            "batch": pd.Categorical(rng.choice(["b1", "b2", "b3"], size=n), categories=["b3", "b1", "b2"]),
            "note": rng.choice(["x", "y"], size=n).astype(object),
            "count": rng.integers(0, 10, size=n),
        },
        index=[f"S{k:03d}" for k in range(n)],
    )
    age = {d: float(rng.integers(20, 80)) for d in donors}
    sex = {d: rng.choice(["female", "male"]) for d in donors}
    obs["Age"] = obs["Participant ID"].map(age)
    obs["Sex"] = pd.Categorical(obs["Participant ID"].map(sex), categories=["female", "male"])
    X = rng.normal(size=(n, n_genes)).astype(np.float32)
    if sparse_x:
        X[X < 0.5] = 0
        X = sparse.csr_matrix(X)
    var = pd.DataFrame(
        {"gene_ids": [f"ENSG{g}" for g in range(n_genes)]}, index=[f"G{g}" for g in range(n_genes)]
    )
    layers = {"counts": rng.integers(0, 100, size=(n, n_genes)).astype(np.int32)}
    return ad.AnnData(X=X, obs=obs, var=var, layers=layers)


def _dense(X):
    return X.toarray() if sparse.issparse(X) else np.asarray(X)


@pytest.mark.parametrize("sparse_x", [False, True])
def test_from_long_layout(sparse_x):
    long = make_long(sparse_x)
    before = long.copy()
    mdata = from_long(long, "Participant ID", "Tissue", donor_obs_keys=["Age", "Sex"])
    assert list(mdata.mod) == ["Lung", "Liver", "Brain"]  # category order
    assert list(mdata.obs_names) == sorted(set(long.obs["Participant ID"]))
    assert list(mdata.obs.columns) == ["Age", "Sex"]
    assert isinstance(mdata.obs["Sex"].dtype, pd.CategoricalDtype)
    for tissue, adata in mdata.mod.items():
        rows = long.obs["Tissue"] == tissue
        assert list(adata.obs_names) == list(long.obs.loc[rows, "Participant ID"])
        assert list(adata.obs["sample_id"]) == list(long.obs_names[rows])
        assert list(adata.obs.columns) == ["sample_id", "rin", "batch", "note", "count"]
        np.testing.assert_array_equal(_dense(adata.X), _dense(long[rows.to_numpy()].X))
        np.testing.assert_array_equal(adata.layers["counts"], long.layers["counts"][rows.to_numpy()])
        pd.testing.assert_frame_equal(adata.var, long.var)
        assert sparse.issparse(adata.X) == sparse_x
    # the input is left alone
    pd.testing.assert_frame_equal(long.obs, before.obs)
    np.testing.assert_array_equal(_dense(long.X), _dense(before.X))


@pytest.mark.parametrize("sparse_x", [False, True])
def test_long_round_trip(sparse_x):
    long = make_long(sparse_x)
    back = to_long(
        from_long(long, "Participant ID", "Tissue", donor_obs_keys=["Age", "Sex"]),
        donor_key="Participant ID",
        tissue_key="Tissue",
    )
    assert set(back.obs_names) == set(long.obs_names)
    back = back[long.obs_names].copy()
    np.testing.assert_array_equal(_dense(back.X), _dense(long.X))
    assert back.X.dtype == long.X.dtype
    assert sparse.issparse(back.X) == sparse_x
    np.testing.assert_array_equal(back.layers["counts"], long.layers["counts"])
    assert back.layers["counts"].dtype == np.int32
    pd.testing.assert_frame_equal(back.var, long.var)
    columns = ["rin", "batch", "note", "count", "Age", "Sex", "Tissue"]
    pd.testing.assert_frame_equal(back.obs[columns], long.obs[columns])
    assert back.obs["Participant ID"].astype(str).tolist() == long.obs["Participant ID"].tolist()


def test_mudata_round_trip():
    observed, truth = simulate(n_donors=40, n_tissues=4, n_genes=5, missing_rate=0.5, covariates=True, seed=5)
    for mdata in (observed, truth):
        long = to_long(mdata)
        n_samples = sum(a.n_obs for a in mdata.mod.values())
        assert long.shape == (n_samples, 5)
        assert list(long.obs.columns[:2]) == ["donor", "tissue"]
        assert list(long.obs_names[:2]) == [f"{d}_tissue_0" for d in mdata["tissue_0"].obs_names[:2]]
        back = from_long(long, "donor", "tissue", donor_obs_keys=["age", "sex"], sample_key="name")
        assert list(back.mod) == list(mdata.mod)
        assert back.obs_names.equals(mdata.obs_names)
        pd.testing.assert_frame_equal(back.obs, mdata.obs)
        for tissue, adata in mdata.mod.items():
            assert back[tissue].obs_names.equals(adata.obs_names)
            np.testing.assert_array_equal(back[tissue].X, adata.X)
            assert set(back[tissue].layers) == set(adata.layers)
            for key in adata.layers:
                np.testing.assert_array_equal(back[tissue].layers[key], adata.layers[key])
            pd.testing.assert_frame_equal(back[tissue].var, adata.var)


def test_gtex_like_round_trip():
    long = make_long()
    mdata = from_long(long, "Participant ID", "Tissue")
    again = from_long(
        to_long(mdata, donor_key="Participant ID", tissue_key="Tissue"), "Participant ID", "Tissue"
    )
    for tissue, adata in mdata.mod.items():
        pd.testing.assert_frame_equal(again[tissue].obs, adata.obs)
        np.testing.assert_array_equal(again[tissue].X, adata.X)


def test_to_long_drops_var_columns_that_differ(caplog):
    observed, _ = simulate(n_donors=20, n_tissues=3, n_genes=4, min_tissues=1)
    observed["tissue_0"].var["expressed"] = [True, False, True, True]
    observed["tissue_1"].var["expressed"] = [True, True, True, True]
    observed["tissue_2"].var["expressed"] = [True, True, True, True]
    for adata in observed.mod.values():
        adata.var["common"] = [True, False, True, True]
    with caplog.at_level("INFO", logger="hyfa.data"):
        long = to_long(observed)
    assert list(long.var.columns) == ["common"]
    assert "Dropping var columns that differ between tissues: expressed" in caplog.text


def test_duplicated_pairs():
    long = make_long()
    extra = long[[0]].copy()
    extra.obs_names = ["S999"]
    both = ad.concat([long, extra], merge="same")
    donor, tissue = long.obs["Participant ID"].iloc[0], long.obs["Tissue"].iloc[0]
    with pytest.raises(
        ValueError,
        match=rf"1 donor/tissue pairs occur in more than one sample, e.g. {donor}/{tissue} \(S000, S999\)",
    ):
        from_long(both, "Participant ID", "Tissue")


def test_bad_keys():
    long = make_long()
    with pytest.raises(ValueError, match=r"`donor_key` 'donor' is not a column of adata.obs"):
        from_long(long, "donor", "Tissue")
    with pytest.raises(ValueError, match=r"`donor_obs_keys` 'age' is not a column"):
        from_long(long, "Participant ID", "Tissue", donor_obs_keys=["age"])
    with pytest.raises(ValueError, match=r"adata.obs\['rin'\] differs between the samples of donors 'D0'"):
        from_long(long, "Participant ID", "Tissue", donor_obs_keys=["rin"])
    long.obs["sample_id"] = "x"
    with pytest.raises(ValueError, match="already has a column 'sample_id'"):
        from_long(long, "Participant ID", "Tissue")
    long = make_long()
    long.obs.loc["S001", "Participant ID"] = np.nan
    with pytest.raises(ValueError, match=r"adata.obs\['Participant ID'\] is missing for samples 'S001'"):
        from_long(long, "Participant ID", "Tissue")


def test_to_long_needs_same_genes():
    observed, _ = simulate(n_donors=20, n_tissues=3, n_genes=4, min_tissues=1)
    observed.mod["tissue_2"] = observed["tissue_2"][:, ["gene_0", "gene_1", "gene_3", "gene_2"]].copy()
    with pytest.raises(ValueError, match="Tissue 'tissue_2' has other genes"):
        to_long(observed)
    observed, truth = simulate(n_donors=20, n_tissues=3, n_genes=4, min_tissues=1)
    observed["tissue_1"].layers["extra"] = observed["tissue_1"].X
    with pytest.raises(ValueError, match=r"Tissue 'tissue_1' has layers \['extra'\]"):
        to_long(observed)
    with pytest.raises(ValueError, match="mdata.obs columns 'x' clash"):
        truth["tissue_0"].obs["x"] = 1.0
        truth.obs["x"] = 2.0
        to_long(truth)
