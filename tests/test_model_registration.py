"""Registration looks every donor up by name, whatever each tissue's donor order and subset."""

import copy

import numpy as np
import pytest
from hyfa_testing import TINY, make_unpaired_mudata

import hyfa
from hyfa._constants import INDICES_OBS_KEY, OBSERVED_OBSM_KEY, REGISTRY_KEYS, SAMPLES_OBSM_KEY


def _check_rows(tensors, mdata, table, tissues, genes):
    n_donors = tensors[REGISTRY_KEYS.X_KEY].shape[0]
    x = tensors[REGISTRY_KEYS.X_KEY].numpy().reshape(n_donors, len(tissues), len(genes))
    observed = tensors[REGISTRY_KEYS.OBSERVED_KEY].numpy()
    donors = mdata.obs_names[tensors[REGISTRY_KEYS.INDICES_KEY].numpy().ravel().astype(int)]
    checked = 0
    for row, donor in enumerate(donors):
        for k, tissue in enumerate(tissues):
            has = donor in set(mdata.mod[tissue].obs_names)
            assert observed[row, k] == float(has), (donor, tissue)
            if has:
                expected = mdata.mod[tissue][donor, genes].X.ravel()
                np.testing.assert_array_equal(x[row, k], expected)
                gene_pos = [int(g.split("_")[1]) for g in genes]
                np.testing.assert_array_equal(x[row, k], table[(donor, tissue)][gene_pos])
                checked += 1
            else:
                assert not x[row, k].any()
    return checked


def test_every_batch_row_equals_the_donors_own_sample(unpaired):
    mdata, table, genes = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    assert model.genes == list(mdata.mod["tissue_0"].var_names)  # first tissue's order
    loader = model._make_data_loader(mdata, batch_size=7, shuffle=True)
    total = sum(_check_rows(t, mdata, table, model.tissues, model.genes) for t in loader)
    assert total == sum(m.n_obs for m in mdata.mod.values())


def test_training_batches_are_aligned(unpaired):
    """The DataSplitter's training loader (what the module sees) returns each donor's own rows."""
    from scvi.dataloaders import DataSplitter

    mdata, table, genes = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    splitter = DataSplitter(model.adata_manager, train_size=0.8, batch_size=5)
    splitter.setup()
    n = sum(_check_rows(t, mdata, table, model.tissues, model.genes) for t in splitter.train_dataloader())
    assert n > 0


def test_layer_and_gene_mask():
    mdata, table, genes = make_unpaired_mudata(layer="normalized", seed=1)
    keep = {"gene_1", "gene_3", "gene_4"}
    for t, adata in mdata.mod.items():
        adata.var["use"] = [g in keep or (g == "gene_0" and t == "tissue_1") for g in adata.var_names]
    hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="use")
    model = hyfa.HYFA(mdata, **TINY)
    assert set(model.genes) == keep  # gene_0 is kept in one tissue only
    tensors = next(iter(model._make_data_loader(mdata, batch_size=mdata.n_obs)))
    x = tensors[REGISTRY_KEYS.X_KEY].numpy().reshape(mdata.n_obs, len(model.tissues), len(model.genes))
    gene_pos = [int(g.split("_")[1]) for g in model.genes]
    for (donor, tissue), vec in table.items():
        row, k = mdata.obs_names.get_loc(donor), model.tissues.index(tissue)
        np.testing.assert_array_equal(x[row, k], vec[gene_pos])


def test_registration_writes_only_documented_keys(unpaired):
    mdata, _, _ = unpaired
    before = {t: copy.deepcopy(a) for t, a in mdata.mod.items()}
    obs_cols, obsm_keys = set(mdata.obs.columns), set(mdata.obsm.keys())
    hyfa.HYFA.setup_mudata(mdata)
    for t, adata in mdata.mod.items():
        np.testing.assert_array_equal(adata.X, before[t].X)
        assert adata.obs_names.equals(before[t].obs_names)
        assert adata.var.equals(before[t].var)
    assert set(mdata.obs.columns) - obs_cols == {INDICES_OBS_KEY}
    assert set(mdata.obsm.keys()) - obsm_keys == {SAMPLES_OBSM_KEY, OBSERVED_OBSM_KEY}
    # no copy of the expression: the registered table points at each donor's row in each tissue
    rows = np.asarray(mdata.obsm[SAMPLES_OBSM_KEY])
    assert rows.shape == (mdata.n_obs, len(mdata.mod)) and rows.dtype == np.int32
    for k, (tissue, adata) in enumerate(mdata.mod.items()):
        present = rows[:, k] >= 0
        assert list(mdata.obs_names[present][np.argsort(rows[present, k])]) == list(adata.obs_names), tissue
    assert (rows >= 0).sum() == sum(a.n_obs for a in mdata.mod.values())


def test_setup_anndata_is_not_supported(unpaired):
    mdata, _, _ = unpaired
    with pytest.raises(NotImplementedError, match="setup_mudata"):
        hyfa.HYFA.setup_anndata(mdata.mod["tissue_0"])


def test_new_mudata_is_stacked_by_name(unpaired):
    """A trained model handed new data (other donor order, fewer tissues) predicts by donor name."""
    mdata, table, genes = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=2, batch_size=16)
    full = model.get_imputed_expression(
        target_tissues="tissue_3",
        source_tissues=["tissue_0", "tissue_1"],
        donors=_donors_with(mdata, ["tissue_0", "tissue_1"], any_of=True),
    )

    # new MuData: reversed donor order in every tissue, tissue_2 and tissue_3 absent
    import mudata as md

    new = md.MuData({t: mdata.mod[t][::-1].copy() for t in ["tissue_1", "tissue_0"]})
    donors = list(full.obs_names[::-1])
    pred = model.get_imputed_expression(new, target_tissues="tissue_3", donors=donors)
    np.testing.assert_allclose(pred[full.obs_names].X, full.X, rtol=1e-5, atol=1e-6)
    assert SAMPLES_OBSM_KEY in new.obsm  # replayed by the field's pre-register hook


def _donors_with(mdata, tissues, any_of=False):
    sets = [set(mdata.mod[t].obs_names) for t in tissues]
    keep = set.union(*sets) if any_of else set.intersection(*sets)
    return [d for d in mdata.obs_names if d in keep]
