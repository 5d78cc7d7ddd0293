"""save -> load round-trips; seeds reproduce training; loaded models refuse data they cannot use."""

import mudata as md
import numpy as np
import pytest
import scvi
import torch
from hyfa_testing import TINY

import hyfa


def test_save_load_gives_identical_imputations(trained, tmp_path):
    model, mdata = trained
    before = model.get_imputed_expression(target_tissues=["tissue_0", "tissue_2"], exclude_target=False)
    model.save(tmp_path / "model", overwrite=True)
    loaded = hyfa.HYFA.load(tmp_path / "model", mdata)
    after = loaded.get_imputed_expression(target_tissues=["tissue_0", "tissue_2"], exclude_target=False)
    for t in ["tissue_0", "tissue_2"]:
        np.testing.assert_array_equal(before[t].X, after[t].X)
        np.testing.assert_array_equal(before[t].layers["sd"], after[t].layers["sd"])
    assert loaded.tissues == model.tissues and loaded.genes == model.genes
    np.testing.assert_array_equal(loaded.train_indices_, model.train_indices_)


def test_fixed_seed_gives_identical_training(unpaired):
    mdata, _, _ = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    states = []
    for _ in range(2):
        scvi.settings.seed = 7
        model = hyfa.HYFA(mdata, **TINY)
        model.train(max_epochs=2, batch_size=16)
        states.append(model.module.state_dict())
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)


def test_load_onto_data_with_other_genes_raises(trained, tmp_path):
    model, mdata = trained
    model.save(tmp_path / "model", overwrite=True)
    other = md.MuData({t: a[:, a.var_names[:-1]].copy() for t, a in mdata.mod.items()})
    with pytest.raises(ValueError, match="lacks 1 genes"):
        hyfa.HYFA.load(tmp_path / "model", other)
    with pytest.raises(ValueError, match="lacks 1 genes"):
        model.get_imputed_expression(other, target_tissues="tissue_0")


def test_data_with_unknown_tissues_raise(trained):
    model, mdata = trained
    mods = dict(mdata.mod)
    mods["Brain_Cortex"] = mdata.mod["tissue_0"].copy()
    with pytest.raises(ValueError, match="not trained on: Brain_Cortex"):
        model.get_imputed_expression(md.MuData(mods), target_tissues="tissue_1")
