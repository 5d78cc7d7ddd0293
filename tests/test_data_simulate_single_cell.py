"""Tests of the paired single-cell simulator: layout, held-out tissue, counts and the ground truth's structure."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from hyfa.data import simulate, simulate_single_cell
from hyfa.pp import aggregate_signatures

N_DONORS = 120


@pytest.fixture(scope="module")
def bulk():
    return simulate(n_donors=N_DONORS, counts=True, seed=0)


@pytest.fixture(scope="module")
def paired(bulk):
    _, truth = bulk
    return simulate_single_cell(truth, seed=0)


def _log_proportions(signatures, tissue, cell_type):
    rows = ((signatures.obs["tissue"] == tissue) & (signatures.obs["cell_type"] == cell_type)).to_numpy()
    assert rows.sum() == N_DONORS
    return np.log(signatures.X[rows].astype(np.float64))


def test_cells_layout(paired):
    cells, _ = paired
    assert sparse.isspmatrix_csr(cells.X) or isinstance(cells.X, sparse.csr_array)
    assert cells.X.dtype == np.float32
    data = cells.X.data
    assert (data > 0).all()
    np.testing.assert_array_equal(data, np.round(data))
    assert list(cells.obs.columns) == ["donor", "tissue", "cell_type", "library_size"]
    for key in ("donor", "tissue", "cell_type"):
        assert isinstance(cells.obs[key].dtype, pd.CategoricalDtype)
    assert cells.obs_names.is_unique
    # genes: the bulk genes but the last 5, then 10 genes measured only in single cells
    assert list(cells.var_names) == [f"gene_{g}" for g in range(35)] + [f"gene_{g}" for g in range(40, 50)]
    np.testing.assert_array_equal(cells.var["in_bulk"], np.r_[np.ones(35, bool), np.zeros(10, bool)])
    # expected library sizes are the mean of the cells' totals, on average
    totals = np.asarray(cells.X.sum(axis=1)).ravel()
    assert abs(totals.sum() / cells.obs["library_size"].sum() - 1) < 0.01


def test_held_out_tissue_has_no_cells(paired):
    cells, signatures = paired
    info = cells.uns["simulate_single_cell"]
    assert info["held_out_tissues"] == ["tissue_9"]
    assert "tissue_9" not in set(cells.obs["tissue"])
    assert "tissue_9" not in cells.obs["tissue"].cat.categories
    assert info["tissues_with_cells"] == [f"tissue_{t}" for t in range(9)]
    assert set(cells.obs["tissue"]) == set(info["tissues_with_cells"])
    held = signatures.obs["tissue"] == "tissue_9"
    assert (signatures.obs.loc[held, "n_cells"] == 0).all()
    np.testing.assert_array_equal(signatures.obs["held_out_tissue"], held)
    # a random 30% of the donors give cells, the others none
    donors = info["donors_with_cells"]
    assert len(donors) == round(0.3 * N_DONORS)
    assert set(cells.obs["donor"]) == set(donors)
    samples = (cells.obs["donor"].astype(str) + "|" + cells.obs["tissue"].astype(str)).unique()
    assert sorted(samples) == sorted(info["samples"])
    donor_order = list(cells.obs["donor"].cat.categories)
    assert [s.split("|")[0] for s in info["samples"]] == sorted(
        (s.split("|")[0] for s in info["samples"]), key=donor_order.index
    )
    assert 0.35 < len(samples) / (len(donors) * 9) < 0.65  # sample_rate=0.5


def test_truth_covers_every_combination(paired, bulk):
    cells, signatures = paired
    _, truth = bulk
    assert signatures.n_obs == N_DONORS * 10 * 4
    expected = [
        f"{d}|{t}|{c}"
        for d in truth.obs_names
        for t in truth.mod
        for c in truth.uns["simulate"]["cell_types"]
    ]
    assert list(signatures.obs_names) == expected
    assert signatures.var_names.equals(cells.var_names)
    assert signatures.X.dtype == np.float32
    assert (signatures.X > 0).all()
    np.testing.assert_allclose(signatures.X.sum(axis=1), 1.0, rtol=1e-5)
    for key in ("donor", "tissue", "cell_type"):
        assert isinstance(signatures.obs[key].dtype, pd.CategoricalDtype)
    assert list(signatures.obs["tissue"].cat.categories) == list(truth.mod)
    # cell counts and libraries describe the simulated cells
    counted = cells.obs.groupby(["donor", "tissue", "cell_type"], observed=True).size()
    counted.index = ["|".join(map(str, i)) for i in counted.index]
    n_cells = signatures.obs["n_cells"]
    assert n_cells.sum() == cells.n_obs
    np.testing.assert_array_equal(n_cells[counted.index], counted)
    np.testing.assert_array_equal(signatures.obs["has_cells"], n_cells > 0)
    assert signatures.obs.loc[n_cells == 0, "library_size"].isna().all()
    no_cells = (n_cells == 0).to_numpy()
    assert (signatures.layers["mean"][no_cells] == 0).all()
    # the number of cells per signature varies, and some cell types are missing from some samples
    with_cells = n_cells[n_cells > 0]
    assert with_cells.std() > 20
    assert with_cells.min() < 5 < 100 < with_cells.max()


def test_aggregated_cells_match_the_truth(paired):
    cells, signatures = paired
    aggregated = aggregate_signatures(cells, n_top_genes=None)
    truth = signatures[aggregated.obs_names]
    np.testing.assert_array_equal(aggregated.obs["n_cells"], truth.obs["n_cells"])
    np.testing.assert_allclose(aggregated.obs["library_size"], truth.obs["library_size"], rtol=1e-6)
    many = (aggregated.obs["n_cells"] >= 20).to_numpy()
    assert many.sum() > 200
    # on the log scale, the sums follow their expectations (the truth's proportions times the cells' libraries)
    x, mean = aggregated.X[many].astype(np.float64), truth.layers["mean"][many].astype(np.float64)
    r = [np.corrcoef(np.log1p(a), np.log1p(b))[0, 1] for a, b in zip(x, mean, strict=True)]
    assert min(r) > 0.95
    # and the proportions themselves (noisier for genes with few counts)
    p = truth.X[many].astype(np.float64)
    r = [np.corrcoef(np.log1p(a), np.log(b))[0, 1] for a, b in zip(x, p, strict=True)]
    assert min(r) > 0.8
    assert np.median(r) > 0.95
    # the expected sums are the sums, on average
    mean = truth.layers["mean"].astype(np.float64)
    assert abs(aggregated.X.sum(dtype=np.float64) / mean.sum() - 1) < 0.01


def test_programs_vary_across_donors_through_their_factors(paired, bulk):
    """Per gene, the truth varies across donors and the donors' factors explain most of it.

    Otherwise a per-(tissue, cell type) mean signature would be unbeatable when scoring per gene
    across donors.
    """
    _, signatures = paired
    _, truth = bulk
    u = truth.obsm["factors"].astype(np.float64)
    design = np.c_[np.ones(len(u)), u, u**2]
    for tissue in ("tissue_0", "tissue_9"):  # a tissue with cells and the held-out one
        for cell_type in ("cell_type_0", "cell_type_3"):
            log_p = _log_proportions(signatures, tissue, cell_type)
            assert np.median(log_p.std(axis=0)) > 0.5
            residual = log_p - design @ np.linalg.lstsq(design, log_p, rcond=None)[0]
            r2 = 1 - residual.var(axis=0) / log_p.var(axis=0)
            assert np.mean(r2 > 0.5) > 0.7, (tissue, cell_type)


def test_programs_are_shared_across_tissues_and_seen_in_bulk(paired, bulk):
    """What a model needs to transfer to the held-out tissue: a cell type's donor effects recur in
    other tissues, and the held-out tissue's own effects show in its bulk."""
    _, signatures = paired
    _, truth = bulk
    a = _log_proportions(signatures, "tissue_0", "cell_type_1")
    b = _log_proportions(signatures, "tissue_9", "cell_type_1")
    per_gene = [np.corrcoef(a[:, g], b[:, g])[0, 1] for g in range(a.shape[1])]
    assert np.median(per_gene) > 0.4
    bulk_9 = np.log(truth["tissue_9"].layers["proportions"][:, :35].astype(np.float64))
    per_gene = [np.corrcoef(bulk_9[:, g], b[:, g])[0, 1] for g in range(35)]
    assert np.median(per_gene) > 0.5


def test_bulk_is_the_mixture_of_the_cell_types(bulk):
    _, truth = bulk
    _, signatures = simulate_single_cell(truth, n_extra_genes=0, n_bulk_only_genes=0, donor_fraction=0.05)
    fractions = truth.uns["simulate"]["cell_type_fractions"]
    p = signatures.X.astype(np.float64).reshape(N_DONORS, 10, 4, -1)
    for t, tissue in enumerate(truth.mod):
        mixture = np.einsum("c,dcg->dg", fractions[t], p[:, t])
        np.testing.assert_allclose(mixture, truth[tissue].layers["proportions"], rtol=1e-4)


def test_reproducible(bulk, paired):
    _, truth = bulk
    cells, signatures = paired
    again, again_truth = simulate_single_cell(truth, seed=0)
    np.testing.assert_array_equal(cells.X.toarray(), again.X.toarray())
    pd.testing.assert_frame_equal(cells.obs, again.obs)
    other, other_truth = simulate_single_cell(truth, seed=1)
    assert other.n_obs != cells.n_obs
    # the true proportions depend on the bulk truth only, not on the sampling seed
    np.testing.assert_array_equal(signatures.X, other_truth.X)


def test_options(bulk):
    _, truth = bulk
    donors = ["donor_3", "donor_1", "donor_7"]
    cells, signatures = simulate_single_cell(
        truth,
        held_out_tissues=["tissue_2", "tissue_5"],
        donors=donors,
        sample_rate=1.0,
        cells_per_sample=(30, 30),
        n_extra_genes=0,
        n_bulk_only_genes=0,
        sparse=False,
        seed=2,
    )
    assert isinstance(cells.X, np.ndarray)
    assert cells.uns["simulate_single_cell"]["donors_with_cells"] == ["donor_1", "donor_3", "donor_7"]
    assert cells.uns["simulate_single_cell"]["held_out_tissues"] == ["tissue_2", "tissue_5"]
    assert set(cells.obs["tissue"]) == {f"tissue_{t}" for t in (0, 1, 3, 4, 6, 7, 8, 9)}
    assert cells.n_obs == 3 * 8 * 30
    assert list(cells.var_names) == list(truth["tissue_0"].var_names)
    assert cells.var["in_bulk"].all()
    _, none_held = simulate_single_cell(truth, held_out_tissues=0, donor_fraction=0.2, seed=3)
    assert none_held.uns["simulate_single_cell"]["held_out_tissues"] == []


def test_fast(bulk):
    _, truth = bulk
    start = time.perf_counter()
    simulate_single_cell(truth)
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"held_out_tissues": 10}, "held_out_tissues must be between 0 and 9"),
        ({"held_out_tissues": ["lung"]}, r"held_out_tissues \['lung'\] are not tissues"),
        ({"donors": ["donor_999"]}, r"donors \['donor_999'\] are not donors"),
        ({"donor_fraction": 0.0}, r"donor_fraction must be in \(0, 1\]"),
        ({"sample_rate": 1.5}, r"sample_rate must be in \(0, 1\]"),
        ({"cells_per_sample": (0, 10)}, "cells_per_sample must satisfy 1 <= low <= high"),
        ({"library_size": (100, 10)}, "library_size must satisfy 0 < low <= high"),
        ({"theta": -1.0}, "theta must be a positive number"),
        ({"n_extra_genes": -1}, "n_extra_genes must be a non-negative integer"),
        ({"n_bulk_only_genes": 40}, "n_bulk_only_genes must be a non-negative integer at most 39"),
        ({"seed": None}, "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments(bulk, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_single_cell(bulk[1], **kwargs)


def test_needs_count_truth():
    _, gaussian = simulate(n_donors=10)
    with pytest.raises(ValueError, match=r"counts=True"):
        simulate_single_cell(gaussian)
    with pytest.raises(TypeError, match="MuData"):
        simulate_single_cell(gaussian["tissue_0"])
