import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

import hyfa


def _adata(X, donors, genes, layer=None):
    a = ad.AnnData(
        X=np.zeros_like(X) if layer else X,
        obs=pd.DataFrame(index=pd.Index(donors)),
        var=pd.DataFrame(index=pd.Index(genes)),
    )
    if layer:
        a.layers[layer] = X
    return a


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_arrays_match_scipy(rng):
    obs = rng.normal(size=(12, 30))
    pred = obs + rng.normal(scale=1.5, size=obs.shape)
    per_sample = hyfa.tl.pearson_per_sample(obs, pred)
    per_gene = hyfa.tl.pearson_per_gene(obs, pred)
    assert isinstance(per_sample, pd.Series) and isinstance(per_gene, pd.Series)
    assert per_sample.index.equals(pd.RangeIndex(12))
    assert per_gene.index.equals(pd.RangeIndex(30))
    expected_sample = [stats.pearsonr(obs[i], pred[i])[0] for i in range(12)]
    expected_gene = [stats.pearsonr(obs[:, j], pred[:, j])[0] for j in range(30)]
    np.testing.assert_allclose(per_sample.to_numpy(), expected_sample, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(per_gene.to_numpy(), expected_gene, rtol=1e-10, atol=1e-12)


def test_perfect_and_anticorrelated():
    obs = np.arange(20, dtype=float).reshape(4, 5) ** 1.5
    np.testing.assert_allclose(hyfa.tl.pearson_per_sample(obs, 3 * obs + 1), 1.0)
    np.testing.assert_allclose(hyfa.tl.pearson_per_gene(obs, -obs), -1.0)


def test_constant_vectors_give_nan_without_warnings(rng):
    obs = rng.normal(size=(5, 8))
    pred = rng.normal(size=(5, 8))
    obs[1] = 0.1  # constant observed sample (0.1 is not exactly representable: mean != 0.1)
    pred[3] = 7.0  # constant predicted sample
    obs_g, pred_g = obs.copy(), pred.copy()
    obs_g[:, 2] = 0.1  # constant observed gene
    pred_g[:, 5] = -3.0  # constant predicted gene
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_sample = hyfa.tl.pearson_per_sample(obs, pred)
        per_gene = hyfa.tl.pearson_per_gene(obs_g, pred_g)
    assert np.isnan(per_sample[1]) and np.isnan(per_sample[3])
    assert np.isfinite(per_sample.drop([1, 3])).all()
    assert np.isnan(per_gene[2]) and np.isnan(per_gene[5])
    assert np.isfinite(per_gene.drop([2, 5])).all()
    np.testing.assert_allclose(per_sample[0], stats.pearsonr(obs[0], pred[0])[0], rtol=1e-10)
    # a constant whose floating-point mean differs from it (mean([0.1] * 3) != 0.1) is still constant
    const = np.full((1, 3), 0.1)
    assert const.mean() != 0.1
    assert np.isnan(hyfa.tl.pearson_per_sample(const, np.array([[1.0, 2.0, 3.0]]))[0])
    assert np.isnan(hyfa.tl.pearson_per_gene(const.T, np.array([[1.0], [2.0], [3.0]]))[0])


def test_anndata_aligned_by_name(rng):
    donors = [f"d{i}" for i in range(10)]
    genes = [f"g{j}" for j in range(15)]
    obs_X = rng.normal(size=(10, 15))
    pred_X = obs_X + rng.normal(size=obs_X.shape)
    observed = _adata(obs_X, donors, genes, layer="normalized")
    # predicted: extra donor and gene, rows and columns shuffled, sparse
    extra = _adata(np.vstack([pred_X, rng.normal(size=(1, 15))]), [*donors, "extra"], genes)
    row_perm = rng.permutation(11)
    col_perm = rng.permutation(15)
    predicted = extra[row_perm, col_perm].copy()
    predicted.X = sparse.csr_matrix(predicted.X)

    per_sample = hyfa.tl.pearson_per_sample(observed, predicted, layer="normalized")
    per_gene = hyfa.tl.pearson_per_gene(observed, predicted, layer="normalized")
    assert list(per_sample.index) == donors
    assert list(per_gene.index) == genes
    np.testing.assert_allclose(per_sample.to_numpy(), hyfa.tl.pearson_per_sample(obs_X, pred_X).to_numpy())
    np.testing.assert_allclose(per_gene.to_numpy(), hyfa.tl.pearson_per_gene(obs_X, pred_X).to_numpy())
    # the layer matters: .X of observed is all zeros -> constant -> NaN
    assert hyfa.tl.pearson_per_sample(observed, predicted).isna().all()


def test_predicted_layer(rng):
    X = rng.normal(size=(6, 7))
    observed = _adata(X, list("abcdef"), list("ABCDEFG"))
    predicted = _adata(X * 2, list("abcdef"), list("ABCDEFG"), layer="pred")
    np.testing.assert_allclose(hyfa.tl.pearson_per_gene(observed, predicted, predicted_layer="pred"), 1.0)


def test_errors(rng):
    X = rng.normal(size=(4, 5))
    observed = _adata(X, ["a", "b", "c", "d"], list("ABCDE"))
    missing_donor = _adata(X[:3], ["a", "b", "c"], list("ABCDE"))
    with pytest.raises(ValueError, match="'d'"):
        hyfa.tl.pearson_per_sample(observed, missing_donor)
    missing_gene = _adata(X[:, :4], ["a", "b", "c", "d"], list("ABCD"))
    with pytest.raises(ValueError, match="genes 'E'"):
        hyfa.tl.pearson_per_gene(observed, missing_gene)
    with pytest.raises(ValueError, match="same shape"):
        hyfa.tl.pearson_per_sample(X, X[:3])
    with pytest.raises(TypeError, match="both"):
        hyfa.tl.pearson_per_sample(observed, X)
    with pytest.raises(KeyError, match="normalized"):
        hyfa.tl.pearson_per_sample(observed, observed, layer="normalized")
