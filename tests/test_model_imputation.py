"""Whole-cohort imputation: shared encodings give the one-target-at-a-time values; streamed files round-trip."""

import time

import anndata as ad
import mudata as md
import numpy as np
import pytest
import torch
from hyfa_testing import TINY

import hyfa
from hyfa._constants import REGISTRY_KEYS


def _reference(model, mdata, target, exclude_target=True):
    """Return {donor: mean} for ``target`` through the training path: inference, gene_offset, generative."""
    tensors = next(iter(model._make_data_loader(mdata, batch_size=mdata.n_obs)))
    observed = tensors[REGISTRY_KEYS.OBSERVED_KEY] > 0
    t = model.tissues.index(target)
    source = observed.clone()
    if exclude_target:
        source[:, t] = False
    keep = source.any(dim=1)
    model.module.eval()
    with torch.no_grad():
        x, mask = tensors[REGISTRY_KEYS.X_KEY][keep], source[keep]
        h = model.module.inference(x=x, source_mask=mask)["donor"]
        tissue = torch.full((h.shape[0],), t)
        offset = model.module.gene_offset(x, torch.arange(h.shape[0]), mask, tissue)  # the gene-level skip
        mean = model.module.generative(h, tissue, gene_offset=offset)["px"].mean.numpy()
    donors = mdata.obs_names[tensors[REGISTRY_KEYS.INDICES_KEY].ravel().long().numpy()][keep.numpy()]
    return dict(zip(donors, mean, strict=True))


def test_all_targets_equal_one_target_at_a_time_and_the_training_path(trained):
    model, mdata = trained
    model.fold_models_ = None  # the training path is the trained model's own (ensembles: test_ensemble.py)
    with pytest.warns(UserWarning, match="Skipping"):  # donors with only the target tissue
        everything = model.get_imputed_expression(batch_size=7)
    assert list(everything.mod) == model.tissues
    for target in model.tissues:
        single = model.get_imputed_expression(target_tissues=target, batch_size=11)
        joint = everything[target]
        assert list(joint.obs_names) == list(single.obs_names)
        np.testing.assert_allclose(joint.X, single.X, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(joint.layers["sd"], single.layers["sd"], rtol=1e-5, atol=1e-6)
        reference = _reference(model, mdata, target)
        assert set(reference) == set(joint.obs_names)
        for donor in joint.obs_names:
            np.testing.assert_allclose(joint[donor].X.ravel(), reference[donor], rtol=1e-4, atol=1e-5)


def test_donors_with_only_the_target_are_skipped_by_name(trained):
    model, mdata = trained
    rows = np.asarray(mdata.obsm["_hyfa_observed"])
    lonely = mdata.obs_names[rows.sum(axis=1) == 1]
    assert len(lonely)  # the fixture has donors with one tissue
    target = model.tissues[int(np.flatnonzero(rows[mdata.obs_names.get_loc(lonely[0])])[0])]
    with pytest.warns(UserWarning, match=f"Skipping .*{lonely[0]}"):
        pred = model.get_imputed_expression(target_tissues=target)
    assert lonely[0] not in pred.obs_names
    assert len(pred.obs_names) == int((rows.sum(axis=1) - rows[:, model.tissues.index(target)] > 0).sum())


def test_written_cohort_round_trips(trained, tmp_path):
    model, mdata = trained
    path = tmp_path / "imputed.h5mu"
    with pytest.warns(UserWarning, match="Skipping"):
        expected = model.get_imputed_expression(target_tissues=["tissue_1", "tissue_3"], batch_size=9)
        model.write_imputed_expression(path, target_tissues=["tissue_1", "tissue_3"], batch_size=9)
    back = md.read_h5mu(path)
    for tissue in ["tissue_1", "tissue_3"]:
        got = back[tissue]
        assert list(got.obs_names) == list(expected[tissue].obs_names)
        assert list(got.var_names) == model.genes
        np.testing.assert_array_equal(got.X, expected[tissue].X)
        np.testing.assert_array_equal(got.layers["sd"], expected[tissue].layers["sd"])
        assert got.uns["hyfa"]["target_tissue"] == tissue
        one = md.read_h5ad(path, tissue)  # one tissue without the others
        np.testing.assert_array_equal(one.X, expected[tissue].X)
    with pytest.raises(FileExistsError, match="imputed.h5mu exists"):
        model.write_imputed_expression(path)
    assert not list(tmp_path.glob("*.partial"))


def test_missing_only_completes_the_cohort(trained, tmp_path):
    model, mdata = trained
    path = tmp_path / "missing.h5mu"
    model.write_imputed_expression(path, missing_only=True)
    back = md.read_h5mu(path)
    full = model.get_imputed_expression(exclude_target=False, donors=list(mdata.obs_names))
    for k, tissue in enumerate(model.tissues):
        missing = mdata.obs_names[np.asarray(mdata.obsm["_hyfa_observed"])[:, k] == 0]
        assert list(back[tissue].obs_names) == list(missing)
        np.testing.assert_allclose(back[tissue].X, full[tissue][missing].X, rtol=1e-5, atol=1e-6)


def test_failed_write_leaves_no_file(trained, tmp_path, monkeypatch):
    model, _ = trained
    path = tmp_path / "broken.h5mu"

    def boom(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(model.module, "predict", boom)
    with pytest.raises(RuntimeError, match="interrupted"), pytest.warns(UserWarning):
        model.write_imputed_expression(path)
    assert not path.exists() and not list(tmp_path.glob("*.partial"))


def test_registration_and_load_are_linear_in_genes(tmp_path):
    """20,000 genes x 3 tissues: the per-gene set rebuild of earlier versions took minutes here."""
    rng = np.random.default_rng(0)
    genes = [f"ENSG{i:011d}" for i in range(20_000)]
    mods = {}
    for t in range(3):
        donors = [f"d{i}" for i in rng.choice(30, size=20, replace=False)]
        order = rng.permutation(len(genes))
        mods[f"t{t}"] = ad.AnnData(
            rng.normal(size=(20, len(genes))).astype(np.float32),
            obs={"_": np.zeros(20)},
            var={"_": np.zeros(len(genes))},
        )
        mods[f"t{t}"].obs_names = donors
        mods[f"t{t}"].var_names = [genes[j] for j in order]
    mdata = md.MuData(mods)
    start = time.perf_counter()
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.save(tmp_path / "m")
    hyfa.HYFA.load(tmp_path / "m", mdata)
    assert time.perf_counter() - start < 60
