"""The completed cohort: observed rows as registered, missing rows imputed, in memory and streamed to disk."""

import mudata as md
import numpy as np
import pytest
from hyfa_testing import TINY, make_unpaired_mudata

import hyfa


@pytest.fixture(scope="module")
def fitted():
    mdata, table, genes = make_unpaired_mudata(n_donors=40, n_tissues=4, n_genes=6, seed=3, layer="norm")
    hyfa.HYFA.setup_mudata(mdata, layer="norm")
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=2, batch_size=16)
    return model, mdata, table, genes


def _check_completed(adata, model, mdata, table, tissue):
    observed = set(mdata.mod[tissue].obs_names)
    assert list(adata.var_names) == model.genes
    assert adata.obs["imputed"].dtype == bool
    np.testing.assert_array_equal(
        adata.obs["imputed"].to_numpy(), [d not in observed for d in adata.obs_names]
    )
    rows = ~adata.obs["imputed"].to_numpy()
    gene_order = [int(g.split("_")[1]) for g in model.genes]
    expected = np.stack([table[(d, tissue)][gene_order] for d in adata.obs_names[rows]])
    np.testing.assert_array_equal(adata.X[rows], expected)  # exactly the registered layer
    assert (adata.layers["sd"][rows] == 0).all()
    assert (adata.layers["sd"][~rows] > 0).all()


def test_completed_cohort_observed_and_imputed_rows(fitted):
    model, mdata, table, _ = fitted
    cohort = model.get_completed_cohort()
    assert isinstance(cohort, md.MuData)
    imputed = model.get_imputed_expression(missing_only=True, exclude_target=False)
    for tissue in model.tissues:
        adata = cohort[tissue]
        assert list(adata.obs_names) == list(mdata.obs_names)  # every donor, registered order
        _check_completed(adata, model, mdata, table, tissue)
        missing = adata[adata.obs["imputed"].to_numpy()]
        assert list(missing.obs_names) == list(imputed[tissue].obs_names)
        np.testing.assert_array_equal(missing.X, imputed[tissue].X)
        np.testing.assert_array_equal(missing.layers["sd"], imputed[tissue].layers["sd"])
        assert adata.uns["hyfa"]["completed"] is True


def test_completed_cohort_skips_donors_without_sources(fitted):
    model, mdata, table, _ = fitted
    has_source = set(mdata.mod["tissue_1"].obs_names)
    lacking = [
        d for d in mdata.obs_names if d not in has_source and d not in set(mdata.mod["tissue_2"].obs_names)
    ]
    assert lacking
    with pytest.warns(UserWarning, match=lacking[0]):
        adata = model.get_completed_cohort(tissues="tissue_2", source_tissues=["tissue_1"])
    assert not set(lacking) & set(adata.obs_names)
    _check_completed(adata, model, mdata, table, "tissue_2")
    # every donor who gave tissue_2 stays, whatever its sources
    assert set(mdata.mod["tissue_2"].obs_names) <= set(adata.obs_names)


def test_write_completed_cohort_matches_memory(fitted, tmp_path):
    model, mdata, table, _ = fitted
    path = tmp_path / "completed.h5mu"
    model.write_completed_cohort(path, tissues=["tissue_0", "tissue_3"], batch_size=7, progress_bar=False)
    written = md.read_h5mu(path)
    memory = model.get_completed_cohort(tissues=["tissue_0", "tissue_3"], batch_size=7)
    for tissue in ("tissue_0", "tissue_3"):
        np.testing.assert_array_equal(written[tissue].X, memory[tissue].X)
        np.testing.assert_array_equal(written[tissue].layers["sd"], memory[tissue].layers["sd"])
        np.testing.assert_array_equal(written[tissue].obs["imputed"], memory[tissue].obs["imputed"])
        _check_completed(written[tissue], model, mdata, table, tissue)
    with pytest.raises(FileExistsError):
        model.write_completed_cohort(path, tissues="tissue_0", progress_bar=False)
    model.write_completed_cohort(path, tissues="tissue_0", overwrite=True, progress_bar=False)
    assert list(md.read_h5mu(path).mod) == ["tissue_0"]


def test_completed_cohort_refuses_observed_library(fitted):
    model, *_ = fitted
    with pytest.raises(ValueError, match="library_size"):
        model.get_completed_cohort(library_size="observed")
