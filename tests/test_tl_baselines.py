import logging
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest

import hyfa

TISSUES = ["Whole_Blood", "Lung", "Liver"]


def _mudata(mods):
    with warnings.catch_warnings():  # mudata's notices about shared gene names / pull_on_update
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Cannot join columns", category=UserWarning)
        return md.MuData(mods)


def _make_mdata(expr: dict[str, np.ndarray], donors, genes, rng, obs=None, present_frac=0.8):
    """Build a MuData from full donors x genes ground-truth matrices.

    Each tissue keeps a random subset of donors, stored in a random order, with genes in a random order
    (except the first tissue), in the "normalized" layer (``.X`` holds garbage). ``var["common"]`` drops one
    tissue-specific gene per tissue plus gene 0 everywhere.
    """
    donors = np.asarray(donors)
    genes = np.asarray(genes)
    mods = {}
    for i, (tissue, X) in enumerate(expr.items()):
        keep = rng.random(len(donors)) < present_frac
        rows = rng.permutation(np.flatnonzero(keep))
        cols = np.arange(len(genes)) if i == 0 else rng.permutation(len(genes))
        a = ad.AnnData(
            X=rng.normal(size=(len(rows), len(cols))).astype(np.float32),
            obs=pd.DataFrame(index=pd.Index(donors[rows])),
            var=pd.DataFrame(index=pd.Index(genes[cols])),
        )
        a.layers["normalized"] = X[np.ix_(rows, cols)].astype(np.float32)
        mask = np.ones(len(genes), dtype=bool)
        mask[0] = False
        mask[len(genes) - 1 - i] = False
        a.var["common"] = mask[cols]
        mods[tissue] = a
    mdata = _mudata(mods)
    if obs is not None:
        for col in obs.columns:
            mdata.obs[col] = obs.loc[mdata.obs_names, col].to_numpy()
    return mdata


def _truth(mdata, tissue, donors, genes):
    """Ground truth by name (the test's own independent lookup)."""
    a = mdata[tissue]
    return (
        pd.DataFrame(a.layers["normalized"], index=a.obs_names, columns=a.var_names)
        .loc[donors, genes]
        .to_numpy()
    )


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(1)
    n_donors, n_genes, n_latent = 160, 40, 4
    donors = [f"donor{i:03d}" for i in range(n_donors)]
    genes = [f"gene{j:02d}" for j in range(n_genes)]
    z = rng.normal(size=(n_donors, n_latent))
    age = rng.uniform(20, 70, size=n_donors)
    sex = rng.choice(["F", "M"], size=n_donors)
    expr = {}
    for t in TISSUES:
        W = rng.normal(size=(n_latent, n_genes))
        expr[t] = (
            z @ W
            + 0.02 * age[:, None]
            + (sex == "F")[:, None] * 0.5
            + 0.1 * rng.normal(size=(n_donors, n_genes))
        )
    obs = pd.DataFrame({"age": age, "sex": pd.Categorical(sex)}, index=donors)
    mdata = _make_mdata(expr, donors, genes, rng, obs=obs)
    perm = rng.permutation(mdata.obs_names)
    train, test = list(perm[:110]), list(perm[110:])
    return mdata, train, test


@pytest.fixture(scope="module")
def clustered():
    rng = np.random.default_rng(2)
    n_donors, n_genes, n_clusters = 200, 30, 5
    donors = [f"D{i}" for i in range(n_donors)]
    genes = [f"G{j}" for j in range(n_genes)]
    cluster = rng.integers(n_clusters, size=n_donors)
    expr = {}
    for t in TISSUES:
        centres = 3 * rng.normal(size=(n_clusters, n_genes))
        expr[t] = centres[cluster] + 0.5 * rng.normal(size=(n_donors, n_genes))
    mdata = _make_mdata(expr, donors, genes, rng)
    perm = rng.permutation(mdata.obs_names)
    return mdata, list(perm[:140]), list(perm[140:])


def _test_donors_with(mdata, donors, tissues):
    return [d for d in donors if all(d in mdata[t].obs_names for t in tissues)]


def test_fixture_is_shuffled(linear):
    mdata, _, _ = linear
    # tissues store different donor subsets in different orders, and genes in different orders
    assert not mdata["Whole_Blood"].obs_names.equals(mdata["Lung"].obs_names)
    assert set(mdata["Whole_Blood"].obs_names) != set(mdata["Lung"].obs_names)
    assert not mdata["Whole_Blood"].var_names.equals(mdata["Lung"].var_names)


def test_gene_mask_intersection_in_first_tissue_order(linear):
    mdata, train, _ = linear
    base = hyfa.tl.MeanImputation(mdata, layer="normalized", gene_mask_key="common")
    first = mdata["Whole_Blood"].var_names
    dropped = {first[0], first[-1], first[-2], first[-3]}
    assert list(base.genes_) == [g for g in first if g not in dropped]
    assert len(hyfa.tl.MeanImputation(mdata).genes_) == mdata["Whole_Blood"].n_vars


def test_mean_imputation_exact(linear):
    mdata, train, test = linear
    base = hyfa.tl.MeanImputation(mdata, layer="normalized", gene_mask_key="common").fit(train)
    out = base.get_imputed_expression(target_tissues="Lung", donors=test)
    assert isinstance(out, ad.AnnData)
    assert list(out.obs_names) == test
    assert list(out.var_names) == list(base.genes_)
    assert out.X.dtype == np.float32
    train_lung = [d for d in train if d in mdata["Lung"].obs_names]
    assert 0 < len(train_lung) < len(train)
    expected = _truth(mdata, "Lung", train_lung, base.genes_).mean(axis=0)
    np.testing.assert_allclose(out.X, np.broadcast_to(expected, out.shape), rtol=1e-6, atol=1e-5)
    assert out.uns["hyfa"] == {"method": "MeanImputation", "target_tissue": "Lung", "source_tissues": []}
    assert out.var["common"].all()

    # list of targets -> MuData, one modality per target
    multi = base.get_imputed_expression(target_tissues=["Lung", "Liver"], donors=test[:5])
    assert isinstance(multi, md.MuData)
    assert set(multi.mod) == {"Lung", "Liver"}
    np.testing.assert_array_equal(multi["Lung"].X, out.X[:5])
    train_liver = [d for d in train if d in mdata["Liver"].obs_names]
    np.testing.assert_allclose(
        multi["Liver"].X[0], _truth(mdata, "Liver", train_liver, base.genes_).mean(axis=0), rtol=1e-6
    )


def test_surrogate_exact_by_name(linear):
    mdata, _, test = linear
    base = hyfa.tl.SurrogateImputation(mdata, layer="normalized", gene_mask_key="common")
    donors = _test_donors_with(mdata, test, ["Whole_Blood"])[::-1]
    out = base.get_imputed_expression(target_tissues="Lung", donors=donors)
    assert list(out.obs_names) == donors
    np.testing.assert_array_equal(out.X, _truth(mdata, "Whole_Blood", donors, base.genes_))
    # default donors: every donor having the surrogate tissue
    out_all = base.get_imputed_expression(target_tissues="Liver")
    assert set(out_all.obs_names) == set(mdata["Whole_Blood"].obs_names)


def test_surrogate_missing_donors_error(linear):
    mdata, _, test = linear
    base = hyfa.tl.SurrogateImputation(mdata, layer="normalized", surrogate_tissue="Whole_Blood")
    lacking = [d for d in mdata.obs_names if d not in mdata["Whole_Blood"].obs_names]
    assert lacking
    with pytest.raises(ValueError, match=lacking[0]):
        base.get_imputed_expression(target_tissues="Lung", donors=[*test[:2], lacking[0]])
    with pytest.raises(ValueError, match="Unknown surrogate tissue"):
        hyfa.tl.SurrogateImputation(mdata, surrogate_tissue="Brain")
    with pytest.raises(ValueError, match="only source"):
        base.get_imputed_expression(target_tissues="Lung", source_tissues=["Liver"])


def test_teebot_linear_recovery(linear):
    mdata, train, test = linear
    teebot = hyfa.tl.TEEBoT(
        mdata, layer="normalized", gene_mask_key="common", n_components=10, covariate_keys=["age", "sex"]
    ).fit(train)
    donors = _test_donors_with(mdata, test, ["Whole_Blood", "Lung"])
    assert len(donors) > 15
    pred = teebot.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=donors)
    observed = mdata["Lung"][donors, pred.var_names].copy()
    r_gene = hyfa.tl.pearson_per_gene(observed, pred, layer="normalized")
    assert len(r_gene) == len(teebot.genes_)
    assert r_gene.min() > 0.9
    # far better than the mean baseline per sample
    mean = hyfa.tl.MeanImputation(mdata, layer="normalized", gene_mask_key="common").fit(train)
    mean_pred = mean.get_imputed_expression(target_tissues="Lung", donors=donors)
    r_teebot = hyfa.tl.pearson_per_sample(observed, pred, layer="normalized")
    r_mean = hyfa.tl.pearson_per_sample(observed, mean_pred, layer="normalized")
    assert r_teebot.median() > 0.9
    assert (r_teebot > r_mean).mean() > 0.9


def test_teebot_two_sources_and_determinism(linear):
    mdata, train, test = linear
    sources = ["Whole_Blood", "Liver"]
    donors = _test_donors_with(mdata, test, [*sources, "Lung"])
    preds = [
        hyfa.tl.TEEBoT(mdata, layer="normalized", n_components=8, seed=3)
        .fit(train)
        .get_imputed_expression(target_tissues="Lung", source_tissues=sources, donors=donors)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(preds[0].X, preds[1].X)
    truth = _truth(mdata, "Lung", donors, preds[0].var_names)
    r = hyfa.tl.pearson_per_gene(truth, preds[0].X)
    assert r.min() > 0.9


def test_teebot_caps_components(linear, caplog):
    mdata, train, test = linear
    teebot = hyfa.tl.TEEBoT(mdata, layer="normalized", n_components=500).fit(train[:30])
    with caplog.at_level(logging.WARNING):
        out = teebot.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=None)
    assert "n_components" in caplog.text
    assert np.isfinite(out.X).all()
    n_train = len(_test_donors_with(mdata, train[:30], ["Whole_Blood", "Lung"]))
    pca = teebot._fitted[(("Whole_Blood",), "Lung")][0]
    assert pca.n_components_ == n_train - 1


def test_knn_beats_mean_on_clusters(clustered):
    mdata, train, test = clustered
    donors = _test_donors_with(mdata, test, ["Whole_Blood", "Lung"])
    observed = mdata["Lung"][donors].copy()
    knn = hyfa.tl.KNNImputation(mdata, layer="normalized", n_neighbors=10).fit(train)
    pred = knn.get_imputed_expression(target_tissues="Lung", source_tissues=["Whole_Blood"], donors=donors)
    mean = hyfa.tl.MeanImputation(mdata, layer="normalized").fit(train)
    mean_pred = mean.get_imputed_expression(target_tissues="Lung", donors=donors)
    r_knn = hyfa.tl.pearson_per_sample(observed, pred, layer="normalized")
    r_mean = hyfa.tl.pearson_per_sample(observed, mean_pred, layer="normalized")
    assert r_knn.median() > 0.9
    assert r_knn.median() > r_mean.median() + 0.3
    assert (r_knn > r_mean).all()


def test_knn_equals_neighbour_mean(clustered):
    """The KNN prediction is the mean target expression of the k nearest training donors in the source."""
    mdata, train, test = clustered
    k = 5
    knn = hyfa.tl.KNNImputation(mdata, layer="normalized", n_neighbors=k).fit(train)
    donors = _test_donors_with(mdata, test, ["Whole_Blood"])[:6]
    pred = knn.get_imputed_expression(target_tissues="Liver", source_tissues="Whole_Blood", donors=donors)
    genes = knn.genes_
    fit_donors = _test_donors_with(mdata, train, ["Whole_Blood", "Liver"])
    src_train = _truth(mdata, "Whole_Blood", fit_donors, genes)
    tgt_train = _truth(mdata, "Liver", fit_donors, genes)
    src_query = _truth(mdata, "Whole_Blood", donors, genes)
    for i in range(len(donors)):
        nearest = np.argsort(((src_train - src_query[i]) ** 2).sum(axis=1))[:k]
        np.testing.assert_allclose(pred.X[i], tgt_train[nearest].mean(axis=0), rtol=1e-5, atol=1e-5)


def test_knn_matches_sklearn_knnimputer(linear):
    """Reference: KNNImputer on [sources, target (NaN for queries), one-hot/numeric covariates]."""
    from sklearn.impute import KNNImputer

    mdata, train, test = linear
    sources, target, k = ["Whole_Blood", "Liver"], "Lung", 7
    knn = hyfa.tl.KNNImputation(
        mdata, layer="normalized", gene_mask_key="common", n_neighbors=k, covariate_keys=["age", "sex"]
    ).fit(train)
    donors = _test_donors_with(mdata, test, sources)
    pred = knn.get_imputed_expression(target_tissues=target, source_tissues=sources, donors=donors)

    genes = knn.genes_
    fit_donors = _test_donors_with(mdata, train, [*sources, target])

    def covs(ds):
        obs = mdata.obs.loc[ds]
        return np.column_stack([obs["age"], obs["sex"] == "F", obs["sex"] == "M"]).astype(float)

    X_fit = np.hstack(
        [
            *(_truth(mdata, s, fit_donors, genes) for s in sources),
            _truth(mdata, target, fit_donors, genes),
            covs(fit_donors),
        ]
    )
    X_query = np.hstack(
        [
            *(_truth(mdata, s, donors, genes) for s in sources),
            np.full((len(donors), len(genes)), np.nan),
            covs(donors),
        ]
    )
    n_src = len(sources) * len(genes)
    expected = KNNImputer(n_neighbors=k).fit(X_fit).transform(X_query)[:, n_src : n_src + len(genes)]
    np.testing.assert_allclose(pred.X, expected, rtol=1e-5, atol=1e-5)


def test_knn_with_covariates(linear):
    mdata, train, test = linear
    knn = hyfa.tl.KNNImputation(mdata, layer="normalized", n_neighbors=5, covariate_keys=["sex", "age"]).fit(
        train
    )
    out = knn.get_imputed_expression(target_tissues=["Lung"], source_tissues="Whole_Blood")
    assert isinstance(out, md.MuData)
    assert np.isfinite(out["Lung"].X).all()


def test_prediction_on_new_mdata(linear):
    """Fitted on one MuData, predicting donors held in another (only the source tissue is needed)."""
    mdata, train, test = linear
    teebot = hyfa.tl.TEEBoT(mdata, layer="normalized", n_components=10).fit(train)
    donors = _test_donors_with(mdata, test, ["Whole_Blood"])
    blood = mdata["Whole_Blood"][donors[::-1]].copy()
    new = _mudata({"Whole_Blood": blood})
    out_new = teebot.get_imputed_expression(
        new, target_tissues="Liver", source_tissues="Whole_Blood", donors=donors
    )
    out_old = teebot.get_imputed_expression(
        target_tissues="Liver", source_tissues="Whole_Blood", donors=donors
    )
    np.testing.assert_allclose(out_new.X, out_old.X, rtol=1e-6)


def test_errors(linear):
    mdata, train, test = linear
    knn = hyfa.tl.KNNImputation(mdata, layer="normalized")
    with pytest.raises(RuntimeError, match="fit"):
        knn.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood")
    knn.fit(train)
    with pytest.raises(ValueError, match=r"Unknown target tissue.*'Brain'.*Available tissues.*'Lung'"):
        knn.get_imputed_expression(target_tissues="Brain", source_tissues="Whole_Blood")
    with pytest.raises(ValueError, match="Unknown source tissue.*'Blood'"):
        knn.get_imputed_expression(target_tissues="Lung", source_tissues=["Blood"])
    with pytest.raises(ValueError, match="needs `source_tissues`"):
        knn.get_imputed_expression(target_tissues="Lung")
    with pytest.raises(ValueError, match="needs `source_tissues`"):
        hyfa.tl.TEEBoT(mdata).fit(train).get_imputed_expression(target_tissues="Lung")
    with pytest.raises(ValueError, match="also given as source"):
        knn.get_imputed_expression(target_tissues="Lung", source_tissues=["Lung"])
    lacking = [d for d in mdata.obs_names if d not in mdata["Whole_Blood"].obs_names]
    with pytest.raises(ValueError, match=rf"lacking.*'{lacking[0]}'.*\({len(lacking)} in total\)"):
        knn.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=lacking)
    with pytest.raises(ValueError, match="not found.*'nobody'"):
        knn.get_imputed_expression(target_tissues="Lung", source_tissues="Whole_Blood", donors=["nobody"])
    with pytest.raises(ValueError, match="not found.*'ghost'"):
        hyfa.tl.MeanImputation(mdata).fit([*train, "ghost"])
    with pytest.raises(KeyError, match="nope"):
        hyfa.tl.MeanImputation(mdata, gene_mask_key="nope")
    with pytest.raises(KeyError, match="raw"):
        hyfa.tl.MeanImputation(mdata, layer="raw").fit(train).get_imputed_expression(target_tissues="Lung")


def test_default_targets_and_output_layout(linear):
    mdata, train, _ = linear
    base = hyfa.tl.SurrogateImputation(mdata, layer="normalized")
    out = base.get_imputed_expression()  # all non-source tissues, all donors having the surrogate
    assert isinstance(out, md.MuData)
    assert set(out.mod) == {"Lung", "Liver"}
    lung = out["Lung"]
    assert lung.uns["hyfa"] == {
        "method": "SurrogateImputation",
        "target_tissue": "Lung",
        "source_tissues": ["Whole_Blood"],
    }
    # donor-level covariates travel along, matched by name
    np.testing.assert_array_equal(lung.obs["age"].to_numpy(), mdata.obs.loc[lung.obs_names, "age"].to_numpy())
    mean_out = hyfa.tl.MeanImputation(mdata).fit(train).get_imputed_expression(target_tissues=None)
    assert set(mean_out.mod) == set(TISSUES)
    assert mean_out["Liver"].n_obs == mdata.n_obs
