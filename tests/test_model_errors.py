"""Bad input raises a clear error naming the tissue, donor or gene, before any training."""

import anndata as ad
import mudata as md
import numpy as np
import pytest
from hyfa_testing import TINY, make_unpaired_mudata

import hyfa


def _setup(mdata, **kwargs):
    hyfa.HYFA.setup_mudata(mdata, **kwargs)


def test_genes_differing_across_tissues():
    mdata, _, _ = make_unpaired_mudata()
    a = mdata.mod["tissue_2"]
    a.var_names = [*a.var_names[:-1], "ALIEN"]
    with pytest.raises(ValueError, match="Genes differ between tissue 'tissue_2'.*ALIEN"):
        _setup(mdata)


def test_duplicated_donor_within_a_tissue():
    mdata, _, _ = make_unpaired_mudata()
    a = mdata.mod["tissue_1"]
    names = list(a.obs_names)
    names[1] = names[0]
    a.obs_names = names
    with pytest.raises(ValueError, match=f"Tissue 'tissue_1' lists donors more than once: {names[0]}"):
        _setup(mdata)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_expression(bad):
    mdata, _, _ = make_unpaired_mudata()
    a = mdata.mod["tissue_3"]
    a.X[2, 1] = bad
    donor, gene = a.obs_names[2], a.var_names[1]
    with pytest.raises(ValueError, match=f"Tissue 'tissue_3'.*NaN or infinite.*{donor}/{gene}"):
        _setup(mdata)


def test_tissue_with_no_donors():
    mdata, _, _ = make_unpaired_mudata()
    mods = dict(mdata.mod)
    mods["empty"] = ad.AnnData(np.zeros((0, mods["tissue_0"].n_vars), np.float32), var=mods["tissue_0"].var)
    with pytest.raises(ValueError, match="Tissue 'empty' has no donors"):
        _setup(md.MuData(mods))


def test_unknown_tissue_and_layer_and_mask():
    mdata, _, _ = make_unpaired_mudata()
    with pytest.raises(ValueError, match="Unknown tissues Lung"):
        _setup(mdata, tissues=["tissue_0", "Lung"])
    with pytest.raises(KeyError, match="Layer 'normalized' not found in tissue 'tissue_0'"):
        _setup(mdata, layer="normalized")
    with pytest.raises(KeyError, match="gene_mask_key 'common'"):
        _setup(mdata, gene_mask_key="common")
    with pytest.raises(TypeError, match="MuData"):
        _setup(mdata.mod["tissue_0"])


def test_covariates_missing_or_nan():
    mdata, _, _ = make_unpaired_mudata()
    with pytest.raises(KeyError, match="categorical covariate 'sex'"):
        _setup(mdata, categorical_covariate_keys=["sex"])
    mdata.obs["age"] = np.linspace(0.2, 0.8, mdata.n_obs)
    mdata.obs.loc[mdata.obs_names[3], "age"] = np.nan
    with pytest.raises(ValueError, match=f"covariate 'age' is missing for donors {mdata.obs_names[3]}"):
        _setup(mdata, continuous_covariate_keys=["age"])


def test_covariates_are_used():
    mdata, _, _ = make_unpaired_mudata()
    mdata.obs["sex"] = np.where(np.arange(mdata.n_obs) % 2, "F", "M")
    mdata.obs["age"] = np.linspace(0.2, 0.8, mdata.n_obs)
    _setup(mdata, categorical_covariate_keys=["sex"], continuous_covariate_keys=["age"])
    model = hyfa.HYFA(mdata, **TINY)
    assert model.module.n_cats_per_cov == [2] and model.module.n_continuous_cov == 1
    model.train(max_epochs=1, batch_size=16)
    z = model.get_latent_representation()
    assert z.shape == (mdata.n_obs, TINY["n_donor_latent"]) and np.isfinite(z).all()


def test_prediction_arguments(unpaired):
    mdata, _, _ = unpaired
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    with pytest.raises(ValueError, match="Unknown target tissues Lung"):
        model.get_imputed_expression(target_tissues="Lung")
    with pytest.raises(ValueError, match="Unknown source tissues Blood"):
        model.get_imputed_expression(target_tissues="tissue_0", source_tissues=["Blood"])
    with pytest.raises(ValueError, match="Unknown donors.*nobody"):
        model.get_imputed_expression(target_tissues="tissue_0", donors=["nobody"])
    only_t0 = [
        d
        for d in mdata.obs_names
        if d in set(mdata.mod["tissue_0"].obs_names) and d not in set(mdata.mod["tissue_1"].obs_names)
    ]
    with pytest.raises(ValueError, match="No donor has any of the source tissues tissue_0, tissue_1 for"):
        model.get_imputed_expression(
            target_tissues="tissue_0", source_tissues=["tissue_0", "tissue_1"], donors=only_t0
        )
    # some donors without a usable source: skipped by name, the others predicted
    with_t1 = [d for d in mdata.obs_names if d in set(mdata.mod["tissue_1"].obs_names)][:3]
    with pytest.warns(UserWarning, match=f"Skipping {len(only_t0)} donors .*{only_t0[0]}"):
        pred = model.get_imputed_expression(
            target_tissues="tissue_0", source_tissues=["tissue_0", "tissue_1"], donors=only_t0 + with_t1
        )
    assert list(pred.obs_names) == with_t1
    for empty in ("source_tissues", "target_tissues"):
        with pytest.raises(ValueError, match=f"{empty} is empty"):
            model.get_imputed_expression(**{empty: []})
    with pytest.raises(KeyError, match="split_key 'fold'"):
        model.train(max_epochs=1, split_key="fold")
    with pytest.raises(ValueError, match="Unknown training donors"):
        model.train(max_epochs=1, train_donors=["nobody"])


def test_nan_loss_stops_training_with_a_message(unpaired):
    mdata, _, _ = unpaired
    for a in mdata.mod.values():
        a.X[:] = 3e38  # finite, but the encoder overflows
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    with pytest.raises(FloatingPointError, match="loss became NaN"):
        model.train(max_epochs=1, batch_size=16)


@pytest.mark.parametrize("exponent", [0.0, -1.0, float("nan"), float("inf")])
def test_source_count_exponent_must_be_positive(exponent):
    mdata, _, _ = make_unpaired_mudata()
    _setup(mdata)
    with pytest.raises(ValueError, match="source_count_exponent must be a positive number"):
        hyfa.HYFA(mdata, source_count_exponent=exponent)
