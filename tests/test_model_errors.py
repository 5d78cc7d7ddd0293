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


# -- regression tests of #15 ---------------------------------------------------------------------
def _single_tissue_cohort(n_single=10, n_paired=2, seed=0):
    """Two tissues; ``n_single`` donors gave one of them, ``n_paired`` (named last) gave both."""
    rng = np.random.default_rng(seed)
    mods = {}
    for t in range(2):
        names = [f"d{i:02d}" for i in range(n_single) if i % 2 == t] + [f"p{i}" for i in range(n_paired)]
        mods[f"t{t}"] = ad.AnnData(rng.normal(size=(len(names), 5)).astype(np.float32))
        mods[f"t{t}"].obs_names = names
        mods[f"t{t}"].var_names = [f"g{j}" for j in range(5)]
    return md.MuData(mods)


def test_minibatch_without_targets_adds_zero_loss():
    """#15.1: a batch whose donors all gave one tissue has no targets; it used to crash in the predictor."""
    mdata = _single_tissue_cohort()
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    singles = [d for d in mdata.obs_names if d.startswith("d")]
    train, val = [*singles[:8], "p0"], [*singles[8:], "p1"]
    model.train(
        max_epochs=1, batch_size=1, train_donors=train, validation_donors=val, enable_progress_bar=False
    )
    assert np.isfinite(model.history["train_loss"].to_numpy(dtype=float)).all()
    assert np.isfinite(model.history["elbo_validation"].to_numpy(dtype=float)).all()


def test_training_without_two_tissue_donors_is_refused():
    """#15.1: no training donor with two tissues -> a clear error before training."""
    mdata = _single_tissue_cohort(n_paired=2)
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    singles = [d for d in mdata.obs_names if d.startswith("d")]
    with pytest.raises(ValueError, match="No training donor gave two or more tissues"):
        model.train(max_epochs=1, train_donors=singles)
    assert not model.is_trained_


def test_categorical_codes_follow_the_registry_on_new_data():
    """#15.2: the same categories in another order must not recode the covariate."""
    import pandas as pd

    mdata, _, _ = make_unpaired_mudata()
    sex = np.where(np.arange(mdata.n_obs) % 2, "F", "M")
    mdata.obs["sex"] = pd.Categorical(sex, categories=["F", "M"])
    _setup(mdata, categorical_covariate_keys=["sex"])
    model = hyfa.HYFA(mdata, **TINY)
    new, _, _ = make_unpaired_mudata()
    new.obs["sex"] = pd.Categorical(sex, categories=["M", "F"])
    model.get_latent_representation(new)
    codes = np.asarray(new.obsm["_scvi_extra_categorical_covs"]["sex"])
    np.testing.assert_array_equal(codes, np.asarray(mdata.obsm["_scvi_extra_categorical_covs"]["sex"]))
    np.testing.assert_array_equal(codes, (sex == "M").astype(int))
    np.testing.assert_allclose(model.get_latent_representation(new), model.get_latent_representation())


def _counts_mudata():
    mdata, _, _ = make_unpaired_mudata()
    for a in mdata.mod.values():
        a.X = np.round(a.X * 10)
    return mdata


def test_count_models_check_new_data_and_loaded_data(tmp_path):
    """#15.3: negative or non-integer values in new data for an 'nb' model are refused, naming tissue and donor."""
    mdata = _counts_mudata()
    _setup(mdata)
    model = hyfa.HYFA(mdata, gene_likelihood="nb", **TINY)
    new = _counts_mudata()
    a = new.mod["tissue_2"]
    a.X[1, 0] = -3
    with pytest.raises(ValueError, match=f"tissue 'tissue_2'.*negative.*{a.obs_names[1]}/"):
        model.get_imputed_expression(new, target_tissues="tissue_0")
    a.X[1, 0] = 2.5
    with pytest.raises(ValueError, match=f"tissue 'tissue_2'.*non-integer.*{a.obs_names[1]}/"):
        model.get_imputed_expression(new, target_tissues="tissue_0")
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="tissue 'tissue_2'.*non-integer"):
        hyfa.HYFA.load(tmp_path / "m", new)
    # a normal-likelihood model takes any finite values
    plain = hyfa.HYFA(mdata, **TINY)
    plain.get_latent_representation(new)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("age", np.nan, "continuous covariate 'age' is missing for donors {donor}"),
        ("age", np.inf, "Continuous covariate 'age' holds infinite values for donors {donor}"),
        ("sex", None, "categorical covariate 'sex' is missing for donors {donor}"),
        ("sex", "X", "Categorical covariate 'sex' has categories the model was not trained on: X"),
    ],
)
def test_covariates_of_new_data_are_checked(key, value, message):
    """#15.4: NaN / infinite / unknown covariates of new data are refused by key and donor."""
    mdata, _, _ = make_unpaired_mudata()
    mdata.obs["sex"] = np.where(np.arange(mdata.n_obs) % 2, "F", "M")
    mdata.obs["age"] = np.linspace(0.2, 0.8, mdata.n_obs)
    _setup(mdata, categorical_covariate_keys=["sex"], continuous_covariate_keys=["age"])
    model = hyfa.HYFA(mdata, **TINY)
    new, _, _ = make_unpaired_mudata()
    sex = np.where(np.arange(new.n_obs) % 2, "F", "M").astype(object)
    age = np.linspace(0.2, 0.8, new.n_obs)
    if key == "sex":
        sex[3] = value
    else:
        age[3] = value
    new.obs["sex"], new.obs["age"] = sex, age
    with pytest.raises(ValueError, match=message.format(donor=new.obs_names[3])):
        model.get_imputed_expression(new, target_tissues="tissue_0")


@pytest.mark.parametrize("problem", ["missing", "duplicated"])
def test_new_data_donor_checks(problem, tmp_path):
    """#15.6: tissues of new data naming donors absent from obs_names, or twice, are refused by name."""
    mdata, _, _ = make_unpaired_mudata()
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    model.save(tmp_path / "m")
    new, _, _ = make_unpaired_mudata()
    names = list(new.mod["tissue_0"].obs_names)
    names[1] = "stranger" if problem == "missing" else names[0]
    new.mod["tissue_0"].obs_names = names
    message = (
        "missing from mdata.obs_names: stranger" if problem == "missing" else f"more than once: {names[0]}"
    )
    with pytest.raises(ValueError, match=f"Tissue 'tissue_0' .*{message}"):
        model.get_imputed_expression(new, target_tissues="tissue_1")
    with pytest.raises(ValueError, match=f"Tissue 'tissue_0' .*{message}"):
        hyfa.HYFA.load(tmp_path / "m", new)


def test_slash_in_tissue_name_is_refused():
    """#15.7: '/' cannot be saved in .h5mu group names, so such a model could never be loaded."""
    mdata, _, _ = make_unpaired_mudata()
    mods = {("Brain/Cortex" if t == "tissue_1" else t): a for t, a in mdata.mod.items()}
    with pytest.raises(ValueError, match="Tissue name 'Brain/Cortex' holds '/'"):
        _setup(md.MuData(mods))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_epochs": -1}, ValueError, "max_epochs must be a positive integer, got -1"),
        ({"max_epochs": 0}, ValueError, "max_epochs must be a positive integer, got 0"),
        ({"max_epochs": 1.5}, TypeError, "max_epochs must be a positive integer"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive integer, got 0"),
        ({"lr": 0.0}, ValueError, "lr must be a positive"),
        ({"train_donors": []}, ValueError, "train_donors is an empty list"),
        ({"train_size": 1.5}, ValueError, "train_size must be a fraction"),
    ],
)
def test_train_arguments_are_checked(unpaired, kwargs, error, message):
    """#15.8: bad training arguments are refused before training, and the model stays untrained."""
    mdata, _, _ = unpaired
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    with pytest.raises(error, match=message):
        model.train(**{"max_epochs": 1, **kwargs})
    assert not model.is_trained_


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["train", "valid"], "labels 'valid' that look like 'val'"),
        (["train", "tst"], "labels 'tst' that look like 'test'"),
        (["train", None], "is missing \\(NaN\\) for donors"),
    ],
)
def test_unknown_split_labels_are_refused(unpaired, labels, message):
    """#15.8: misspelt or missing split labels used to make test donors silently."""
    mdata, _, _ = unpaired
    mdata.obs["split"] = [labels[i % 2] for i in range(mdata.n_obs)]
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    with pytest.raises(ValueError, match=message):
        model.train(max_epochs=1, split_key="split")


def test_other_split_labels_are_held_out_with_a_warning(unpaired):
    mdata, _, _ = unpaired
    mdata.obs["split"] = ["Train " if i % 3 else "unassigned" for i in range(mdata.n_obs)]
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    n_held_out = (mdata.obs["split"] == "unassigned").sum()
    with pytest.warns(UserWarning, match=f"labels 'unassigned' \\({n_held_out} donors\\).*held out"):
        model.train(max_epochs=1, split_key="split", enable_progress_bar=False)
    assert len(model.train_indices_) == mdata.n_obs - n_held_out


def test_load_names_missing_or_corrupted_model_file(unpaired, tmp_path):
    mdata, _, _ = unpaired
    _setup(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    with pytest.raises(FileNotFoundError, match="folder .*nowhere"):
        hyfa.HYFA.load(tmp_path / "nowhere", mdata)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model.pt"):
        hyfa.HYFA.load(tmp_path / "empty", mdata)
    model.save(tmp_path / "m")
    path = tmp_path / "m" / "model.pt"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(ValueError, match="model.pt.*corrupted"):
        hyfa.HYFA.load(tmp_path / "m", mdata)


def test_nullable_boolean_gene_mask():
    """pandas' nullable 'boolean' mask was refused as 'must be boolean, got boolean'."""
    import pandas as pd

    mdata, _, _ = make_unpaired_mudata()
    for a in mdata.mod.values():
        a.var["keep"] = pd.array(a.var_names != "gene_0", dtype="boolean")
    _setup(mdata, gene_mask_key="keep")
    assert "gene_0" not in hyfa.HYFA(mdata, **TINY).genes
    mdata.mod["tissue_2"].var.loc["gene_3", "keep"] = pd.NA
    with pytest.raises(
        ValueError, match="mdata\\['tissue_2'\\].var\\['keep'\\] is missing \\(NA\\) for genes gene_3"
    ):
        _setup(mdata, gene_mask_key="keep")


def test_conversion_errors_name_the_key_and_tissue():
    mdata, _, _ = make_unpaired_mudata()
    mdata.obs["age"] = ["old" if i == 0 else "0.5" for i in range(mdata.n_obs)]
    with pytest.raises(ValueError, match="Continuous covariate 'age' must be numeric"):
        _setup(mdata, continuous_covariate_keys=["age"])
    mdata, _, _ = make_unpaired_mudata()
    a = mdata.mod["tissue_1"]
    mdata.mod["tissue_1"] = ad.AnnData(a.X.astype(str).astype(object), obs=a.obs, var=a.var)
    mdata.mod["tissue_1"].X[0, 0] = "n/a"
    with pytest.raises(TypeError, match="Tissue 'tissue_1' \\(X\\) must hold numbers"):
        _setup(mdata)
