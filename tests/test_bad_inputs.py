"""Table-driven bad inputs through the public API (#15).

Each case gives the exception type and a pattern that names the culprit (tissue, donor, gene, key,
file or argument). Every case also checks that the user's data are unchanged, except for the
documented registration entries (see ``docs/robustness.md``).
"""

import gzip
import shutil

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
from hyfa_testing import TINY, make_unpaired_mudata

import hyfa
from hyfa.data import _bundled

#: Entries registration may write to a MuData (setup_mudata's docstring).
DOCUMENTED_OBS = {"_indices"}
DOCUMENTED_OBSM = {
    "_hyfa_samples",
    "_hyfa_observed",
    "_scvi_extra_categorical_covs",
    "_scvi_extra_continuous_covs",
}
DOCUMENTED_UNS = {"_scvi_uuid", "_scvi_manager_uuid"}


def _data():
    mdata, _, _ = make_unpaired_mudata()
    mdata.obs["sex"] = np.where(np.arange(mdata.n_obs) % 2, "F", "M")
    mdata.obs["age"] = np.linspace(0.2, 0.8, mdata.n_obs)
    return mdata


def _snapshot(mdata):
    """Everything of ``mdata`` but the documented registration entries."""
    if not isinstance(mdata, md.MuData):
        return None
    return {
        "obs": mdata.obs.drop(columns=[c for c in DOCUMENTED_OBS if c in mdata.obs]).copy(),
        "obsm": {k: np.asarray(v).copy() for k, v in mdata.obsm.items() if k not in DOCUMENTED_OBSM},
        "uns": sorted(k for k in mdata.uns if k not in DOCUMENTED_UNS),
        "mods": {
            t: (
                a.obs.copy(),
                a.var.copy(),
                np.array(a.X, copy=True),
                {k: np.array(v, copy=True) for k, v in a.layers.items()},
            )
            for t, a in mdata.mod.items()
        },
    }


def _assert_unchanged(before, mdata):
    if before is None:
        return
    after = _snapshot(mdata)
    pd.testing.assert_frame_equal(before["obs"], after["obs"])
    assert before["obsm"].keys() == after["obsm"].keys()
    assert before["uns"] == after["uns"]
    assert list(before["mods"]) == list(after["mods"])
    for t, (obs, var, X, layers) in before["mods"].items():
        obs2, var2, X2, layers2 = after["mods"][t]
        pd.testing.assert_frame_equal(obs, obs2)
        pd.testing.assert_frame_equal(var, var2)
        np.testing.assert_array_equal(X, X2)
        assert layers.keys() == layers2.keys()
        for k in layers:
            np.testing.assert_array_equal(layers[k], layers2[k])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model with both kinds of covariate, trained one epoch and saved."""
    mdata = _data()
    hyfa.HYFA.setup_mudata(mdata, categorical_covariate_keys=["sex"], continuous_covariate_keys=["age"])
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=1, batch_size=16, enable_progress_bar=False)
    path = tmp_path_factory.mktemp("saved") / "model"
    model.save(path)
    return model, mdata, path


# -- helpers that make a bad input out of good data ----------------------------------------------
def _set_x(tissue, row, col, value):
    def mutate(mdata):
        mdata.mod[tissue].X[row, col] = value

    return mutate


def _rename_donor(tissue, row, name):
    def mutate(mdata):
        names = list(mdata.mod[tissue].obs_names)
        names[row] = names[0] if name is None else name
        mdata.mod[tissue].obs_names = names

    return mutate


def _rename_tissue(old, new):
    def mutate(mdata):
        return md.MuData({(new if t == old else t): a for t, a in mdata.mod.items()}, obs=mdata.obs)

    return mutate


def _set_obs(key, values):
    def mutate(mdata):
        mdata.obs[key] = values(mdata)

    return mutate


def _with_row(key, row, value):
    def values(mdata):
        column = np.asarray(mdata.obs[key], dtype=object).copy()
        column[row] = value
        return column if key == "sex" else column.astype(float)

    return _set_obs(key, values)


def _drop_gene(tissue, gene):
    def mutate(mdata):
        mods = dict(mdata.mod)
        mods[tissue] = mods[tissue][:, [g for g in mods[tissue].var_names if g != gene]].copy()
        return md.MuData(mods, obs=mdata.obs)

    return mutate


def _mask(values):
    def mutate(mdata):
        for a in mdata.mod.values():
            a.var["keep"] = values(a)

    return mutate


def _nothing(mdata):
    return None


# -- registration (setup_mudata) ------------------------------------------------------------------
SETUP_CASES = [
    ("not a MuData", lambda m: m.mod["tissue_0"], {}, TypeError, "MuData"),
    ("unknown tissue", _nothing, {"tissues": ["tissue_0", "Lung"]}, ValueError, "Unknown tissues Lung"),
    ("one tissue", _nothing, {"tissues": ["tissue_0"]}, ValueError, "at least two tissues"),
    ("tissue twice", _nothing, {"tissues": ["tissue_0", "tissue_0"]}, ValueError, "listed twice: tissue_0"),
    (
        "slash in tissue",
        _rename_tissue("tissue_1", "Brain/Cortex"),
        {},
        ValueError,
        "'Brain/Cortex' holds '/'",
    ),
    (
        "unknown layer",
        _nothing,
        {"layer": "normalized"},
        KeyError,
        "'normalized' not found in tissue 'tissue_0'",
    ),
    ("gene missing", _drop_gene("tissue_2", "gene_3"), {}, ValueError, "tissue 'tissue_2'.*missing gene_3"),
    ("NaN value", _set_x("tissue_3", 2, 1, np.nan), {}, ValueError, "Tissue 'tissue_3'.*NaN or infinite"),
    (
        "infinite value",
        _set_x("tissue_1", 0, 0, np.inf),
        {},
        ValueError,
        "Tissue 'tissue_1'.*NaN or infinite",
    ),
    (
        "donor twice",
        _rename_donor("tissue_1", 1, None),
        {},
        ValueError,
        "Tissue 'tissue_1' lists donors more than once",
    ),
    (
        "donor not in obs",
        _rename_donor("tissue_2", 1, "stranger"),
        {},
        ValueError,
        "'tissue_2'.*obs_names: stranger",
    ),
    ("no mask column", _nothing, {"gene_mask_key": "keep"}, KeyError, "gene_mask_key 'keep'"),
    (
        "mask not boolean",
        _mask(lambda a: np.ones(a.n_vars)),
        {"gene_mask_key": "keep"},
        ValueError,
        "var\\['keep'\\] must be boolean",
    ),
    (
        "mask with NA",
        _mask(lambda a: pd.array([None] + [True] * (a.n_vars - 1), dtype="boolean")),
        {"gene_mask_key": "keep"},
        ValueError,
        "var\\['keep'\\] is missing \\(NA\\) for genes",
    ),
    (
        "mask all false",
        _mask(lambda a: np.zeros(a.n_vars, bool)),
        {"gene_mask_key": "keep"},
        ValueError,
        "No gene passes gene_mask_key 'keep'",
    ),
    # covariates
    (
        "covariate absent",
        _nothing,
        {"categorical_covariate_keys": ["batch"]},
        KeyError,
        "categorical covariate 'batch'",
    ),
    (
        "categorical NaN",
        _with_row("sex", 4, None),
        {"categorical_covariate_keys": ["sex"]},
        ValueError,
        "'sex' is missing for donors",
    ),
    (
        "continuous NaN",
        _with_row("age", 4, np.nan),
        {"continuous_covariate_keys": ["age"]},
        ValueError,
        "'age' is missing for donors",
    ),
    (
        "continuous inf",
        _with_row("age", 4, np.inf),
        {"continuous_covariate_keys": ["age"]},
        ValueError,
        "'age' holds infinite values for donors",
    ),
    (
        "continuous text",
        _set_obs("age", lambda m: np.array(["old"] * m.n_obs, dtype=object)),
        {"continuous_covariate_keys": ["age"]},
        ValueError,
        "Continuous covariate 'age' must be numeric",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "pattern"), [c[1:] for c in SETUP_CASES], ids=[c[0] for c in SETUP_CASES]
)
def test_registration(mutate, kwargs, error, pattern):
    mdata = _data()
    mdata = mutate(mdata) or mdata
    before = _snapshot(mdata)
    with pytest.raises(error, match=pattern):
        hyfa.HYFA.setup_mudata(mdata, **kwargs)
    _assert_unchanged(before, mdata)


# -- the model and its counts ---------------------------------------------------------------------
def _counts(mdata):
    for a in mdata.mod.values():
        a.X = np.round(a.X * 10)


MODEL_CASES = [
    (
        "unknown likelihood",
        _nothing,
        {"gene_likelihood": "poisson"},
        ValueError,
        "gene_likelihood must be one of",
    ),
    (
        "exponent",
        _nothing,
        {"source_count_exponent": 0.0},
        ValueError,
        "source_count_exponent must be a positive",
    ),
    (
        "negative counts",
        _set_x("tissue_2", 1, 1, -1.0),
        {"gene_likelihood": "nb"},
        ValueError,
        "tissue 'tissue_2'.*negative",
    ),
    (
        "non-integer counts",
        _set_x("tissue_0", 1, 1, 0.5),
        {"gene_likelihood": "zinb"},
        ValueError,
        "tissue 'tissue_0'.*non-integer",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "kwargs", "error", "pattern"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES]
)
def test_model(mutate, kwargs, error, pattern):
    mdata = _data()
    _counts(mdata)
    mutate(mdata)
    hyfa.HYFA.setup_mudata(mdata)
    before = _snapshot(mdata)
    with pytest.raises(error, match=pattern):
        hyfa.HYFA(mdata, **TINY, **kwargs)
    _assert_unchanged(before, mdata)


# -- training arguments ---------------------------------------------------------------------------
TRAIN_CASES = [
    ("max_epochs -1", {"max_epochs": -1}, ValueError, "max_epochs must be a positive integer, got -1"),
    ("max_epochs 0", {"max_epochs": 0}, ValueError, "max_epochs must be a positive integer, got 0"),
    ("max_epochs text", {"max_epochs": "10"}, TypeError, "max_epochs must be a positive integer"),
    ("batch_size 0", {"batch_size": 0}, ValueError, "batch_size must be a positive integer, got 0"),
    ("lr nan", {"lr": float("nan")}, ValueError, "lr must be a positive finite number"),
    ("train_size", {"train_size": 2.0}, ValueError, "train_size must be a fraction"),
    ("train_donors empty", {"train_donors": []}, ValueError, "train_donors is an empty list"),
    ("unknown train donor", {"train_donors": ["nobody"]}, ValueError, "Unknown training donors.*nobody"),
    (
        "train donor twice",
        {"train_donors": ["donor_001", "donor_001"]},
        ValueError,
        "listed more than once: donor_001",
    ),
    (
        "unknown val donor",
        {"train_donors": ["donor_001"], "validation_donors": ["ghost"]},
        ValueError,
        "validation donors.*ghost",
    ),
    (
        "val without train",
        {"validation_donors": ["donor_001"]},
        ValueError,
        "validation_donors needs train_donors",
    ),
    (
        "train and val",
        {"train_donors": ["donor_001"], "validation_donors": ["donor_001"]},
        ValueError,
        "both in training and validation: donor_001",
    ),
    ("split_key absent", {"split_key": "fold"}, KeyError, "split_key 'fold'"),
    ("split 'valid'", {"split_key": "split_valid"}, ValueError, "labels 'valid' that look like 'val'"),
    ("split 'tst'", {"split_key": "split_tst"}, ValueError, "labels 'tst' that look like 'test'"),
    ("split NaN", {"split_key": "split_nan"}, ValueError, "'split_nan'\\] is missing \\(NaN\\) for donors"),
    (
        "split no train",
        {"split_key": "split_none"},
        ValueError,
        "No donor has mdata.obs\\['split_none'\\] == 'train'",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"), [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES]
)
def test_training_arguments(trained, kwargs, error, pattern):
    model, mdata, _ = trained
    n = mdata.n_obs
    columns = {
        "split_valid": ["train" if i % 2 else "valid" for i in range(n)],
        "split_tst": ["train" if i % 2 else "tst" for i in range(n)],
        "split_nan": ["train" if i % 2 else None for i in range(n)],
        "split_none": ["test"] * n,
    }
    if kwargs.get("split_key") in columns:
        mdata = mdata.copy()  # the split column must not stay in the shared data
        mdata.obs[kwargs["split_key"]] = columns[kwargs["split_key"]]
        hyfa.HYFA.setup_mudata(mdata, categorical_covariate_keys=["sex"], continuous_covariate_keys=["age"])
        model = hyfa.HYFA(mdata, **TINY)
    before = _snapshot(mdata)
    with pytest.raises(error, match=pattern):
        model.train(**kwargs)
    _assert_unchanged(before, mdata)


def test_training_needs_a_donor_with_two_tissues():
    mods = {}
    for t in range(2):
        a = ad.AnnData(np.ones((3, 4), np.float32))
        a.obs_names = [f"t{t}_donor_{i}" for i in range(3)]
        mods[f"tissue_{t}"] = a
    mdata = md.MuData(mods)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, **TINY)
    before = _snapshot(mdata)
    with pytest.raises(ValueError, match="No donor gave two or more tissues .*t0_donor_0"):
        model.train(max_epochs=1)
    _assert_unchanged(before, mdata)


# -- imputation arguments -------------------------------------------------------------------------
IMPUTE_CASES = [
    ("unknown target", {"target_tissues": "Lung"}, ValueError, "Unknown target tissues Lung"),
    (
        "unknown source",
        {"target_tissues": "tissue_0", "source_tissues": ["Blood"]},
        ValueError,
        "Unknown source tissues Blood",
    ),
    ("empty sources", {"source_tissues": []}, ValueError, "source_tissues is empty"),
    ("empty targets", {"target_tissues": []}, ValueError, "target_tissues is empty"),
    (
        "unknown donor",
        {"target_tissues": "tissue_0", "donors": ["nobody"]},
        ValueError,
        "Unknown donors.*nobody",
    ),
    (
        "donor twice",
        {"target_tissues": "tissue_0", "donors": ["donor_001", "donor_001"]},
        ValueError,
        "more than once: donor_001",
    ),
    ("empty donors", {"target_tissues": "tissue_0", "donors": []}, ValueError, "donors is an empty list"),
    ("n_samples 0", {"target_tissues": "tissue_0", "n_samples": 0}, ValueError, "n_samples must be >= 1"),
    (
        "library on normal",
        {"target_tissues": "tissue_0", "library_size": 1e4},
        ValueError,
        "library_size applies to count",
    ),
    (
        "library text",
        {"target_tissues": "tissue_0", "library_size": "median"},
        ValueError,
        "library_size must be 'latent'",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"), [c[1:] for c in IMPUTE_CASES], ids=[c[0] for c in IMPUTE_CASES]
)
def test_imputation_arguments(trained, kwargs, error, pattern):
    model, mdata, _ = trained
    before = _snapshot(mdata)
    with pytest.raises(error, match=pattern):
        model.get_imputed_expression(**kwargs)
    _assert_unchanged(before, mdata)


def test_latent_representation_arguments(trained):
    model, mdata, _ = trained
    with pytest.raises(ValueError, match="kind must be 'donor', 'tissue' or 'metagene', got 'gene'"):
        model.get_latent_representation(kind="gene")
    with pytest.raises(ValueError, match="Unknown source tissues Blood"):
        model.get_latent_representation(source_tissues=["Blood"])


# -- new data (imputation) and HYFA.load ----------------------------------------------------------
def _extra_tissue(mdata):
    mods = dict(mdata.mod)
    mods["Brain_Cortex"] = mods["tissue_0"].copy()
    return md.MuData(mods, obs=mdata.obs)


NEW_DATA_CASES = [
    ("unknown tissue", _extra_tissue, ValueError, "not trained on: Brain_Cortex"),
    (
        "gene missing",
        _drop_gene("tissue_1", "gene_2"),
        ValueError,
        "Tissue 'tissue_1' lacks 1 genes .*gene_2",
    ),
    ("NaN value", _set_x("tissue_2", 0, 0, np.nan), ValueError, "Tissue 'tissue_2'.*NaN or infinite"),
    (
        "donor twice",
        _rename_donor("tissue_0", 1, None),
        ValueError,
        "Tissue 'tissue_0' lists donors more than once",
    ),
    (
        "donor not in obs",
        _rename_donor("tissue_3", 1, "stranger"),
        ValueError,
        "'tissue_3'.*obs_names: stranger",
    ),
    (
        "categorical NaN",
        _with_row("sex", 5, None),
        ValueError,
        "categorical covariate 'sex' is missing for donors",
    ),
    (
        "unknown category",
        _with_row("sex", 5, "X"),
        ValueError,
        "'sex' has categories the model was not trained on: X",
    ),
    (
        "continuous NaN",
        _with_row("age", 5, np.nan),
        ValueError,
        "continuous covariate 'age' is missing for donors",
    ),
    ("continuous inf", _with_row("age", 5, -np.inf), ValueError, "'age' holds infinite values"),
    (
        "covariate absent",
        lambda m: m.obs.drop(columns="age", inplace=True),
        KeyError,
        "continuous covariate 'age'",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"), [c[1:] for c in NEW_DATA_CASES], ids=[c[0] for c in NEW_DATA_CASES]
)
@pytest.mark.parametrize("where", ["imputation", "load"])
def test_new_data(trained, where, mutate, error, pattern):
    model, _, path = trained
    new = _data()
    new = mutate(new) or new
    before = _snapshot(new)
    with pytest.raises(error, match=pattern):
        if where == "imputation":
            model.get_imputed_expression(new, target_tissues="tissue_1")
        else:
            hyfa.HYFA.load(path, new)
    _assert_unchanged(before, new)


def test_new_data_count_model(tmp_path):
    mdata = _data()
    _counts(mdata)
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, gene_likelihood="nb", **TINY)
    model.save(tmp_path / "nb")
    new = _data()
    _counts(new)
    new.mod["tissue_1"].X = new.mod["tissue_1"].X / 7  # TPM-like
    before = _snapshot(new)
    with pytest.raises(ValueError, match="tissue 'tissue_1'.*non-integer"):
        model.get_imputed_expression(new, target_tissues="tissue_0")
    with pytest.raises(ValueError, match="tissue 'tissue_1'.*non-integer"):
        hyfa.HYFA.load(tmp_path / "nb", new)
    _assert_unchanged(before, new)


# -- persistence -----------------------------------------------------------------------------------
def _truncate(path):
    (path / "model.pt").write_bytes((path / "model.pt").read_bytes()[:500])


def _garbage(path):
    (path / "model.pt").write_bytes(b"not a model")


def _remove(path):
    (path / "model.pt").unlink()


@pytest.mark.parametrize(
    ("damage", "error", "pattern"),
    [
        (_truncate, ValueError, "model.pt' is corrupted"),
        (_garbage, ValueError, "model.pt' is corrupted"),
        (_remove, FileNotFoundError, "model.pt"),
    ],
    ids=["truncated", "garbage", "missing"],
)
def test_damaged_model_file(trained, tmp_path, damage, error, pattern):
    model, mdata, path = trained
    copy = tmp_path / "model"
    shutil.copytree(path, copy)
    damage(copy)
    before = _snapshot(mdata)
    with pytest.raises(error, match=pattern):
        hyfa.HYFA.load(copy, mdata)
    _assert_unchanged(before, mdata)


def test_missing_model_folder(trained, tmp_path):
    _, mdata, _ = trained
    with pytest.raises(FileNotFoundError, match="folder .*nowhere.* does not exist"):
        hyfa.HYFA.load(tmp_path / "nowhere", mdata)


def test_save_refuses_to_overwrite(trained):
    model, _, path = trained
    with pytest.raises(ValueError, match="already exists"):
        model.save(path)


# -- readers ---------------------------------------------------------------------------------------
READS = _bundled._FILES / _bundled._READS
ATTRIBUTES = _bundled._FILES / _bundled._ATTRIBUTES


def test_reader_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gct.gz"):
        hyfa.data.read_gtex(tmp_path / "nope.gct.gz", ATTRIBUTES)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        hyfa.data.read_gtex(READS, tmp_path / "nope.txt")


def test_reader_truncated_gzip(tmp_path):
    data = READS.read_bytes()
    bad = tmp_path / "truncated.gct.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.gct.gz.*truncated"):
        hyfa.data.read_gtex(bad, ATTRIBUTES)


def test_reader_arguments():
    with pytest.raises(ValueError, match="min_tissues_per_donor must be a positive integer"):
        hyfa.data.read_gtex(READS, ATTRIBUTES, min_tissues_per_donor=0)
    with pytest.raises(ValueError, match="`genes` is empty"):
        hyfa.data.read_gtex(READS, ATTRIBUTES, genes=[])


def test_from_long_names_the_key():
    adata = ad.AnnData(np.zeros((2, 2), np.float32))
    before = adata.obs.copy()
    with pytest.raises(ValueError, match="`donor_key` 'donor' is not a column"):
        hyfa.data.from_long(adata, donor_key="donor", tissue_key="tissue")
    pd.testing.assert_frame_equal(before, adata.obs)


def test_gzip_helper_is_a_real_gzip():  # guards the truncation test's premise
    with gzip.open(READS, "rb") as f:
        assert f.read(10)
