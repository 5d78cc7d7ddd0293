"""Tests of hyfa.pp.aggregate_signatures on small hand-built single-cell data."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from hyfa.pp import aggregate_signatures

# 12 cells: cell type "T" in 4 (donor, tissue) pairs, "B" in 2 and "rare" in 1.
DONORS = ["d1", "d1", "d1", "d1", "d1", "d2", "d2", "d2", "d2", "d2", "d1", "d2"]
TISSUES = ["tA", "tA", "tA", "tB", "tB", "tA", "tA", "tA", "tA", "tB", "tA", "tA"]
TYPES = ["T", "T", "B", "T", "rare", "T", "T", "B", "B", "T", "B", "T"]
GENES = ["g0", "g1", "g2", "g3"]


def _counts() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 50, size=(12, 4)).astype(np.float32)


def _cells(X=None, **obs_columns) -> ad.AnnData:
    obs = pd.DataFrame(
        {"donor": DONORS, "tissue": TISSUES, "cell_type": TYPES, **obs_columns},
        index=[f"c{k}" for k in range(12)],
    )
    return ad.AnnData(X=_counts() if X is None else X, obs=obs, var=pd.DataFrame(index=GENES))


def _expected_by_loops(X: np.ndarray, drop=()) -> dict[str, tuple[np.ndarray, int, float]]:
    """Sum counts of every (donor, tissue, cell type) with plain loops: name -> (sums, n_cells, mean total)."""
    out = {}
    for key in sorted(set(zip(DONORS, TISSUES, TYPES, strict=True))):
        if key[2] in drop:
            continue
        rows = [k for k in range(12) if (DONORS[k], TISSUES[k], TYPES[k]) == key]
        sums = np.zeros(X.shape[1])
        for k in rows:
            for g in range(X.shape[1]):
                sums[g] += float(X[k, g])
        out["|".join(key)] = (sums, len(rows), sums.sum() / len(rows))
    return out


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x,
        lambda x: x.astype(np.int64),
        lambda x: x.astype(np.float64),
        sparse.csr_matrix,
        sparse.csc_matrix,
        lambda x: sparse.csr_array(x.astype(np.int32)),
    ],
    ids=["float32", "int64", "float64", "csr", "csc", "csr_array_int32"],
)
def test_sums_cells_and_libraries_exactly(convert):
    X = _counts()
    result = aggregate_signatures(_cells(convert(X)), min_profiles=0, n_top_genes=None)
    expected = _expected_by_loops(X)
    assert list(result.obs_names) == list(expected)  # sorted by donor, tissue, cell type
    assert result.X.dtype == np.float32
    assert isinstance(result.X, np.ndarray)
    assert list(result.var_names) == GENES
    assert list(result.obs.columns) == ["donor", "tissue", "cell_type", "n_cells", "library_size"]
    for name, (sums, n_cells, library) in expected.items():
        np.testing.assert_array_equal(result[name].X.ravel(), sums)
        assert result.obs.loc[name, "n_cells"] == n_cells
        assert result.obs.loc[name, "library_size"] == pytest.approx(library, rel=1e-12)
    assert result.obs.loc["d1|tA|T", "n_cells"] == 2
    np.testing.assert_array_equal(result["d1|tA|T"].X.ravel(), X[0] + X[1])
    assert result.obs.loc["d2|tA|T", "n_cells"] == 3
    assert result.obs.loc["d2|tA|T", "library_size"] == pytest.approx(X[[5, 6, 11]].sum() / 3)
    assert result.X.sum() == X.sum()
    for key, values in (("donor", ["d1", "d2"]), ("tissue", ["tA", "tB"]), ("cell_type", ["B", "T", "rare"])):
        assert list(result.obs[key].cat.categories) == values


def test_categorical_order_and_other_keys():
    cells = _cells()
    cells.obs = pd.DataFrame(
        {
            "individual": pd.Categorical(DONORS, categories=["d2", "d1", "unused"]),
            "organ": TISSUES,
            "label": TYPES,
        },
        index=cells.obs_names,
    )
    result = aggregate_signatures(
        cells,
        donor_key="individual",
        tissue_key="organ",
        cell_type_key="label",
        min_profiles=0,
        n_top_genes=None,
    )
    assert result.obs_names[0].startswith("d2|")
    assert list(result.obs["donor"].cat.categories) == ["d2", "d1"]
    assert list(result.obs.columns[:3]) == ["donor", "tissue", "cell_type"]
    info = result.uns["aggregate_signatures"]
    assert (info["donor_key"], info["tissue_key"], info["cell_type_key"]) == ("individual", "organ", "label")


def test_min_profiles_drops_and_warns(caplog):
    X = _counts()
    with caplog.at_level(logging.WARNING, logger="hyfa"):
        with pytest.warns(UserWarning, match=r"Dropping 1 of 3 cell types .* min_profiles=2 .*'rare' \(1\)"):
            result = aggregate_signatures(_cells(X), min_profiles=2, n_top_genes=None)
    assert "'rare' (1)" in caplog.text
    assert "rare" not in set(result.obs["cell_type"])
    assert list(result.obs["cell_type"].cat.categories) == ["B", "T"]
    expected = _expected_by_loops(X, drop={"rare"})
    assert list(result.obs_names) == list(expected)
    info = result.uns["aggregate_signatures"]
    assert info["dropped_cell_types"] == ["rare"]
    assert info["profiles_per_cell_type"] == {"B": 2, "T": 4, "rare": 1}
    assert info["min_profiles"] == 2
    # "B" is in 2 pairs, so min_profiles=3 drops it too
    with pytest.warns(UserWarning, match=r"'B' \(2\), 'rare' \(1\)"):
        result = aggregate_signatures(_cells(X), min_profiles=3, n_top_genes=None)
    assert set(result.obs["cell_type"]) == {"T"}
    with pytest.raises(ValueError, match="No cell type is observed in at least min_profiles=5"):
        with pytest.warns(UserWarning):
            aggregate_signatures(_cells(X), min_profiles=5, n_top_genes=None)


def test_no_warning_when_nothing_is_dropped(recwarn):
    aggregate_signatures(_cells(), min_profiles=1, n_top_genes=None)
    assert not [w for w in recwarn if "Dropping" in str(w.message)]


@pytest.mark.parametrize("to_sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize(
    ("value", "match"),
    [
        (-1.0, r"adata.X has 1 negative counts .*e.g. cell/gene c3/g2=-1.0"),
        (2.5, r"adata.X has 1 non-integer counts .*e.g. cell/gene c3/g2=2.5"),
        (np.nan, r"adata.X has 1 NaN or infinite counts .*e.g. cell/gene c3/g2=nan"),
    ],
)
def test_bad_counts_are_rejected(value, match, to_sparse):
    X = _counts()
    X[3, 2] = value
    cells = _cells(sparse.csr_matrix(X) if to_sparse else X)
    with pytest.raises(ValueError, match=match):
        aggregate_signatures(cells, min_profiles=0, n_top_genes=None)


def test_bad_integer_counts_and_layers():
    X = _counts().astype(np.int64)
    X[7, 0] = -3
    with pytest.raises(ValueError, match=r"negative counts .*c7/g0=-3"):
        aggregate_signatures(_cells(X), min_profiles=0, n_top_genes=None)
    cells = _cells(np.full((12, 4), 0.5, dtype=np.float32))
    cells.layers["counts"] = _counts()
    with pytest.raises(ValueError, match=r"adata.X has 48 non-integer counts"):
        aggregate_signatures(cells, min_profiles=0, n_top_genes=None)
    result = aggregate_signatures(cells, layer="counts", min_profiles=0, n_top_genes=None)
    assert result.X.sum() == _counts().sum()
    assert result.uns["aggregate_signatures"]["layer"] == "counts"
    cells.layers["bad"] = -_counts()
    with pytest.raises(ValueError, match=r"adata.layers\['bad'\] has \d+ negative counts"):
        aggregate_signatures(cells, layer="bad", min_profiles=0, n_top_genes=None)


def test_missing_keys_and_labels():
    with pytest.raises(KeyError, match="'batch'"):
        aggregate_signatures(_cells(), donor_key="batch")
    with pytest.raises(KeyError, match="no layer 'counts'"):
        aggregate_signatures(_cells(), layer="counts")
    with pytest.raises(KeyError, match="genes not in adata.var_names: 'g9'"):
        aggregate_signatures(_cells(), genes=["g0", "g9"])
    cells = _cells()
    cells.obs["tissue"] = pd.Categorical([None] + TISSUES[1:])
    with pytest.raises(ValueError, match=r"adata.obs\['tissue'\] is missing for 1 cells, e.g. 'c0'"):
        aggregate_signatures(cells, min_profiles=0)
    cells = _cells()
    cells.obs["donor"] = ["a|b"] * 6 + ["a"] * 6
    cells.obs["tissue"] = ["c"] * 6 + ["b|c"] * 6
    cells.obs["cell_type"] = "T"
    with pytest.raises(ValueError, match=r"'a\|b\|c\|T' repeat because labels contain '\|'"):
        aggregate_signatures(cells, min_profiles=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_profiles": -1}, "min_profiles must be a non-negative integer"),
        ({"min_profiles": 2.5}, "min_profiles must be a non-negative integer"),
        ({"n_top_genes": 0}, "n_top_genes must be a positive integer or None"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        aggregate_signatures(_cells(), **kwargs)


def _overdispersed(n_cells=400, n_genes=60, seed=0):
    """Counts where the first genes are much more variable than a Poisson of their mean."""
    rng = np.random.default_rng(seed)
    mean = rng.lognormal(0.0, 1.0, size=n_genes)
    theta = np.where(np.arange(n_genes) < 10, 0.3, 100.0)
    X = rng.poisson(rng.gamma(theta, mean / theta, size=(n_cells, n_genes))).astype(np.float32)
    obs = pd.DataFrame(
        {
            "donor": rng.choice(["d0", "d1", "d2", "d3"], n_cells),
            "tissue": rng.choice(["t0", "t1", "t2"], n_cells),
            "cell_type": rng.choice(["a", "b"], n_cells),
        },
        index=[f"c{k}" for k in range(n_cells)],
    )
    var = pd.DataFrame({"symbol": [f"S{g}" for g in range(n_genes)]}, index=[f"g{g}" for g in range(n_genes)])
    return ad.AnnData(X=sparse.csr_matrix(X), obs=obs, var=var)


def test_highly_variable_genes_and_no_mutation():
    cells = _overdispersed()
    before = cells.copy()
    result = aggregate_signatures(cells, n_top_genes=10, min_profiles=5)
    # the input is untouched
    assert (cells.X != before.X).nnz == 0
    pd.testing.assert_frame_equal(cells.obs, before.obs)
    pd.testing.assert_frame_equal(cells.var, before.var)
    assert dict(cells.uns) == {} and list(cells.layers) == []
    # the genes are scanpy's seurat_v3 selection, in their original order, with its statistics
    reference = sc.pp.highly_variable_genes(before.copy(), flavor="seurat_v3", n_top_genes=10, inplace=False)
    selected = reference.index[reference["highly_variable"]]
    assert list(result.var_names) == [g for g in cells.var_names if g in set(selected)]
    assert set(result.var_names) == {f"g{g}" for g in range(10)}  # the overdispersed genes
    np.testing.assert_array_equal(
        result.var["highly_variable_rank"], reference.loc[result.var_names, "highly_variable_rank"]
    )
    assert list(result.var["symbol"]) == [f"S{g[1:]}" for g in result.var_names]
    # sums over the selected genes only
    full = aggregate_signatures(cells, n_top_genes=None, min_profiles=5)
    np.testing.assert_array_equal(result.X, full[result.obs_names, result.var_names].X)
    np.testing.assert_allclose(
        result.obs["library_size"] * result.obs["n_cells"], result.X.sum(axis=1, dtype=np.float64)
    )
    assert result.uns["aggregate_signatures"]["flavor"] == "seurat_v3"
    assert result.uns["aggregate_signatures"]["n_top_genes"] == 10


def test_all_genes_kept_without_selection():
    cells = _overdispersed()
    for n_top_genes in (None, 60, 1000):
        result = aggregate_signatures(cells, n_top_genes=n_top_genes, min_profiles=0)
        assert result.var_names.equals(cells.var_names)
        assert "highly_variable_rank" not in result.var.columns
    assert result.uns["aggregate_signatures"]["flavor"] == "none (all genes kept)"
    assert aggregate_signatures(cells, n_top_genes=None).uns["aggregate_signatures"]["n_top_genes"] == -1


def test_genes_restriction_and_views():
    cells = _overdispersed()
    genes = ["g50", "g3", "g7"]
    result = aggregate_signatures(cells, n_top_genes=None, genes=genes, min_profiles=0)
    assert list(result.var_names) == ["g3", "g7", "g50"]
    full = aggregate_signatures(cells, n_top_genes=None, min_profiles=0)
    np.testing.assert_array_equal(result.X, full[:, ["g3", "g7", "g50"]].X)
    # library sizes are over the kept genes
    np.testing.assert_allclose(result.obs["library_size"] * result.obs["n_cells"], result.X.sum(axis=1))
    view = cells[cells.obs["tissue"] != "t2"]
    result = aggregate_signatures(view, n_top_genes=5, min_profiles=0)
    assert view.is_view
    assert "t2" not in set(result.obs["tissue"])
    assert result.n_vars == 5


def test_large_sums_stay_exact():
    X = np.zeros((12, 4), dtype=np.float64)
    X[:, 0] = 2**24 - 1  # a float32 cannot hold the sum of two of these exactly
    X[:, 1] = 1
    result = aggregate_signatures(_cells(X), min_profiles=0, n_top_genes=None)
    assert result.X.dtype == np.float64
    assert result["d2|tA|T"].X[0, 0] == 3 * (2**24 - 1)
    assert result["d2|tA|T"].X[0, 1] == 3
