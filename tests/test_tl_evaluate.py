"""hyfa.tl.evaluate_imputation, evaluation_donors, summarize_evaluation and win_counts."""

import logging
import warnings

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scvi
from hyfa_testing import TINY
from scipy import stats

import hyfa

GENES = [f"g{j}" for j in range(6)]
DONORS = [f"d{i:02d}" for i in range(30)]

#: Who was collected where. With min_donors=5 and source A: targets C and E keep 5 donors (d00-d04,
#: d10-d14), D keeps 4 (d00, d01, d02, d05 -> dropped); with sources A+B: C keeps 4 (d00-d03 -> dropped),
#: D 3 (dropped), E 5 (d10-d14).
PATTERN = {
    "A": [0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 20],
    "B": [0, 1, 2, 3, 10, 11, 12, 13, 14],
    "C": [0, 1, 2, 3, 4, 6, 7, 8, 9],
    "D": [0, 1, 2, 5, 6, 7, 8, 9, 21, 22, 23],
    "E": [10, 11, 12, 13, 14, 15],
}
TARGETS = ["C", "D", "E"]

#: The donors collected in at least one tissue (d16-d19 and d24-d29 are in none).
EVAL = [d for i, d in enumerate(DONORS) if any(i in present for present in PATTERN.values())]


def _value(donor: int, tissue: str, gene: int) -> float:
    """Deterministic, donor-, tissue- and gene-specific expression."""
    rng = np.random.default_rng([donor, ord(tissue), gene])
    return float(rng.normal())


def _mudata(pattern=PATTERN):
    rng = np.random.default_rng(0)
    mods = {}
    for tissue, present in pattern.items():
        rows = rng.permutation(present)
        cols = rng.permutation(len(GENES))
        X = np.array([[_value(i, tissue, j) for j in cols] for i in rows], dtype=np.float32)
        a = ad.AnnData(
            X=rng.normal(size=X.shape).astype(np.float32),  # garbage: the layer holds the expression
            obs=pd.DataFrame(index=[DONORS[i] for i in rows]),
            var=pd.DataFrame(index=[GENES[j] for j in cols]),
        )
        a.layers["normalized"] = X
        mods[tissue] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData(mods)
    assert sorted(mdata.obs_names) == EVAL
    return mdata


def _truth(tissue, donors):
    return np.array([[_value(DONORS.index(d), tissue, j) for j in range(len(GENES))] for d in donors])


def _prediction(tissue, donors):
    """What the fixed predictor returns: a known function of donor, target tissue and gene."""
    return np.array(
        [
            [np.sin(3 * DONORS.index(d) + 7 * j + len(tissue)) + 0.1 * j for j in range(len(GENES))]
            for d in donors
        ]
    )


#: Gene order of the fixed predictor's output (the table follows the first method's genes).
PREDICTED_ORDER = [3, 0, 5, 1, 4, 2]


class FixedPredictor:
    """Predicts ``_prediction`` with shuffled genes and reversed donors; records its calls."""

    def __init__(self):
        self.calls = []

    def get_imputed_expression(self, mdata=None, target_tissues=None, source_tissues=None, donors=None):
        self.calls.append((target_tissues, source_tissues, list(donors)))
        order = PREDICTED_ORDER
        X = _prediction(target_tissues, donors)[::-1][:, order]
        return ad.AnnData(
            X=X.astype(np.float32),
            obs=pd.DataFrame(index=list(donors)[::-1]),
            var=pd.DataFrame(index=[GENES[j] for j in order]),
        )


SOURCES = {"blood": ["A"], "pair": ["A", "B"], "all": None}


@pytest.fixture
def mdata():
    return _mudata()


def test_table_matches_hand_computed_pearson(mdata):
    predictor = FixedPredictor()
    res = hyfa.tl.evaluate_imputation(
        predictor,
        mdata,
        donors=EVAL,
        sources=SOURCES,
        target_tissues=TARGETS,
        baselines=None,
        layer="normalized",
        min_donors=5,
    )
    assert list(res.columns) == [
        "method", "sources", "target", "id", "metric", "value", "source_tissues", "source_setting",
    ]  # fmt: skip
    assert (res["source_setting"] == res["sources"]).all()  # no baseline, nothing reused
    assert set(res["method"]) == {"FixedPredictor"}
    kept = res.groupby("sources", sort=False)["target"].unique().map(list).to_dict()
    assert kept == {"blood": ["C", "E"], "pair": ["E"], "all": ["C", "E"]}
    labels = res.groupby("sources", sort=False)["source_tissues"].unique().map(list).to_dict()
    assert labels == {"blood": ["A"], "pair": ["A+B"], "all": ["all other collected"]}

    c_donors, e_donors = ["d00", "d01", "d02", "d03", "d04"], ["d10", "d11", "d12", "d13", "d14"]
    for setting, target, donors in [
        ("blood", "C", c_donors),
        ("blood", "E", e_donors),
        ("pair", "E", e_donors),
        ("all", "C", c_donors),
        ("all", "E", e_donors),
    ]:
        truth, pred = _truth(target, donors), _prediction(target, donors)
        rows = res[(res["sources"] == setting) & (res["target"] == target)]
        per_sample = rows[rows["metric"] == "per-sample"]
        per_gene = rows[rows["metric"] == "per-gene"]
        assert list(per_sample["id"]) == donors
        # genes follow the first method's output (matched by name to the measured expression)
        assert list(per_gene["id"]) == [GENES[j] for j in PREDICTED_ORDER]
        expected_sample = [stats.pearsonr(truth[i], pred[i])[0] for i in range(len(donors))]
        expected_gene = [stats.pearsonr(truth[:, j], pred[:, j])[0] for j in PREDICTED_ORDER]
        np.testing.assert_allclose(per_sample["value"], expected_sample, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(per_gene["value"], expected_gene, rtol=1e-5, atol=1e-6)

    # one call per target with exactly its donors and the setting's sources (None: the donor's own tissues)
    calls = {(t, None if s is None else tuple(s)): d for t, s, d in predictor.calls}
    assert calls == {
        ("C", ("A",)): c_donors,
        ("E", ("A",)): e_donors,
        ("E", ("A", "B")): e_donors,
        ("C", None): c_donors,
        ("E", None): e_donors,
    }


def test_donor_selection_rule(mdata):
    assert "d16" not in EVAL and "d20" in EVAL
    c_donors, e_donors = ["d00", "d01", "d02", "d03", "d04"], ["d10", "d11", "d12", "d13", "d14"]
    selection = hyfa.tl.evaluation_donors(mdata, EVAL, sources=SOURCES, target_tissues=TARGETS, min_donors=5)
    assert selection == {
        "blood": {"C": c_donors, "E": e_donors},  # D: 4 donors with A -> dropped
        "pair": {"E": e_donors},  # C: 4 donors with A and B, D: 3 -> dropped
        "all": {"C": c_donors, "E": e_donors},  # matched to "blood": the same donors
    }
    # exactly min_donors is enough: min_donors=4 keeps D (with A) and C (with A+B)
    selection = hyfa.tl.evaluation_donors(mdata, EVAL, sources=SOURCES, target_tissues=TARGETS, min_donors=4)
    assert selection["blood"] == {"C": c_donors, "D": ["d00", "d01", "d02", "d05"], "E": e_donors}
    assert selection["pair"] == {"C": ["d00", "d01", "d02", "d03"], "E": e_donors}
    # unmatched "all": donors with the target and at least one other tissue (d15 has only E, d21-d23
    # only D: out)
    selection = hyfa.tl.evaluation_donors(
        mdata, EVAL, sources=SOURCES, target_tissues=TARGETS, min_donors=5, match_setting=None
    )
    assert selection["all"] == {
        "C": ["d00", "d01", "d02", "d03", "d04", "d06", "d07", "d08", "d09"],
        "D": ["d00", "d01", "d02", "d05", "d06", "d07", "d08", "d09"],
        "E": e_donors,
    }
    # only the given donors count: without d04, C falls below 5 donors with A
    without = [d for d in EVAL if d != "d04"]
    with pytest.warns(UserWarning, match="'blood': no target tissue has at least 5"):
        selection = hyfa.tl.evaluation_donors(
            mdata, without, sources={"blood": ["A"]}, target_tissues=["C"], min_donors=5
        )
    assert selection == {"blood": {}}
    # all tissues are candidate targets by default, but never a setting's own sources
    selection = hyfa.tl.evaluation_donors(mdata, EVAL, sources="A", min_donors=5)
    assert selection == {
        "A": {"B": ["d00", "d01", "d02", "d03", "d10", "d11", "d12", "d13", "d14"]}
        | {
            "C": c_donors,
            "E": e_donors,
        }
    }


def test_evaluate_uses_the_selection(mdata):
    res = hyfa.tl.evaluate_imputation(
        FixedPredictor(),
        mdata,
        donors=EVAL,
        sources=SOURCES,
        target_tissues=TARGETS,
        baselines=None,
        layer="normalized",
        min_donors=5,
        match_setting=None,
    )
    per_sample = res[(res["sources"] == "all") & (res["metric"] == "per-sample")]
    assert per_sample.groupby("target", sort=False).size().to_dict() == {"C": 9, "D": 8, "E": 5}


def test_baselines_per_setting(mdata):
    train = ["d06", "d07", "d08", "d15"]  # none of them is selected for evaluation below
    test = [d for d in EVAL if d not in train]
    baselines = {
        "mean": hyfa.tl.MeanImputation(mdata, layer="normalized").fit(train),
        "surrogate": hyfa.tl.SurrogateImputation(mdata, layer="normalized", surrogate_tissue="B"),
    }
    kwargs = {"target_tissues": TARGETS, "baselines": baselines, "layer": "normalized", "min_donors": 5}
    res = hyfa.tl.evaluate_imputation(FixedPredictor(), mdata, test, SOURCES, name="fixed", **kwargs)
    methods = res.groupby("sources", sort=False)["method"].unique().map(list).to_dict()
    # the surrogate of B applies only where B is a source; "all" reuses the "blood" baselines
    assert methods == {
        "blood": ["fixed", "mean"],
        "pair": ["fixed", "mean", "surrogate"],
        "all": ["fixed", "mean"],
    }
    surrogate = res[(res["method"] == "surrogate") & (res["metric"] == "per-sample")]
    assert set(surrogate["source_tissues"]) == {"B"}
    donors = list(surrogate["id"])
    assert donors == ["d10", "d11", "d12", "d13", "d14"]
    expected = [stats.pearsonr(_truth("E", [d])[0], _truth("B", [d])[0])[0] for d in donors]
    np.testing.assert_allclose(surrogate["value"], expected, rtol=1e-5)
    # mean imputation: the training mean of the target; per-sample r against it, per-gene r undefined
    mean = res[(res["sources"] == "blood") & (res["method"] == "mean") & (res["target"] == "C")]
    profile = _truth("C", ["d06", "d07", "d08"]).mean(axis=0)
    expected = [stats.pearsonr(_truth("C", [d])[0], profile)[0] for d in ["d00", "d01", "d02", "d03", "d04"]]
    np.testing.assert_allclose(mean.loc[mean["metric"] == "per-sample", "value"], expected, rtol=1e-5)
    assert res.loc[(res["method"] == "mean") & (res["metric"] == "per-gene"), "value"].isna().all()
    blood = res[(res["sources"] == "blood") & (res["method"] == "mean")].reset_index(drop=True)
    every = res[(res["sources"] == "all") & (res["method"] == "mean")].reset_index(drop=True)
    pd.testing.assert_frame_equal(blood.drop(columns="sources"), every.drop(columns="sources"))
    assert set(every["source_tissues"]) == {"A"}
    # without matching, the variable-source setting scores the model alone
    alone = hyfa.tl.evaluate_imputation(FixedPredictor(), mdata, test, SOURCES, match_setting=None, **kwargs)
    assert set(alone.loc[alone["sources"] == "all", "method"]) == {"FixedPredictor"}


def test_reused_rows_are_marked(mdata):
    train = ["d06", "d07", "d08", "d15"]
    test = [d for d in EVAL if d not in train]
    baselines = {
        "mean": hyfa.tl.MeanImputation(mdata, layer="normalized").fit(train),
        "surrogate": hyfa.tl.SurrogateImputation(mdata, layer="normalized", surrogate_tissue="B"),
    }
    kwargs = {"target_tissues": TARGETS, "baselines": baselines, "layer": "normalized", "min_donors": 5}
    res = hyfa.tl.evaluate_imputation(FixedPredictor(), mdata, test, SOURCES, name="fixed", **kwargs)
    origin = res.groupby(["sources", "method"], sort=False)["source_setting"].unique().map(list).to_dict()
    # each row names the setting whose predictions it scores: only the baselines of "all" come from "blood"
    assert origin == {
        ("blood", "fixed"): ["blood"],
        ("blood", "mean"): ["blood"],
        ("pair", "fixed"): ["pair"],
        ("pair", "mean"): ["pair"],
        ("pair", "surrogate"): ["pair"],
        ("all", "fixed"): ["all"],
        ("all", "mean"): ["blood"],
    }
    # matched to "pair", "all" reuses the surrogate of B too; unmatched, it reuses nothing
    res = hyfa.tl.evaluate_imputation(
        FixedPredictor(), mdata, test, SOURCES, name="fixed", match_setting="pair", **kwargs
    )
    reused = res[res["source_setting"] != res["sources"]]
    assert set(reused["sources"]) == {"all"} and set(reused["source_setting"]) == {"pair"}
    assert list(pd.unique(reused["method"])) == ["mean", "surrogate"]
    pair = res[(res["sources"] == "pair") & res["method"].isin(["mean", "surrogate"])]
    pd.testing.assert_frame_equal(
        pair.drop(columns="sources").reset_index(drop=True),
        reused.drop(columns="sources").reset_index(drop=True),
    )
    alone = hyfa.tl.evaluate_imputation(FixedPredictor(), mdata, test, SOURCES, match_setting=None, **kwargs)
    assert (alone["source_setting"] == alone["sources"]).all()


class OwnSources(FixedPredictor):
    """A custom baseline (no hyfa.tl class) that always predicts from its own ``source_tissues``."""

    def __init__(self, source_tissues):
        super().__init__()
        self.source_tissues = source_tissues


def test_custom_baseline_declares_its_sources(mdata):
    kwargs = {"target_tissues": TARGETS, "layer": "normalized", "min_donors": 5}
    from_b, from_pair, anywhere = OwnSources(("B",)), OwnSources(["A", "B"]), OwnSources(None)
    baselines = {"from B": from_b, "from A+B": from_pair, "anywhere": anywhere}
    res = hyfa.tl.evaluate_imputation(FixedPredictor(), mdata, EVAL, SOURCES, baselines=baselines, **kwargs)
    methods = res.groupby("sources", sort=False)["method"].unique().map(list).to_dict()
    # B is a source of "pair" only; "all" reuses the baselines of "blood"
    assert methods == {
        "blood": ["FixedPredictor", "anywhere"],
        "pair": ["FixedPredictor", "from B", "from A+B", "anywhere"],
        "all": ["FixedPredictor", "anywhere"],
    }
    # called with exactly their own sources, the setting's donors, and labelled so
    assert from_b.calls == [("E", ["B"], ["d10", "d11", "d12", "d13", "d14"])]
    assert from_pair.calls == [("E", ["A", "B"], ["d10", "d11", "d12", "d13", "d14"])]
    assert set(res.loc[res["method"] == "from B", "source_tissues"]) == {"B"}
    assert set(res.loc[res["method"] == "from A+B", "source_tissues"]) == {"A+B"}
    assert [sources for _, sources, _ in anywhere.calls] == [["A"], ["A"], ["A", "B"]]
    # matched to "pair", the variable setting reports them too, as predicted in "pair"
    res = hyfa.tl.evaluate_imputation(
        FixedPredictor(), mdata, EVAL, SOURCES, baselines=baselines, match_setting="pair", **kwargs
    )
    every = res[res["sources"] == "all"]
    assert list(pd.unique(every["method"])) == ["FixedPredictor", "from B", "from A+B", "anywhere"]
    assert set(every.loc[every["method"] == "from B", "source_setting"]) == {"pair"}
    assert len(from_b.calls) == 2  # one more call for the second evaluation, none for "all"


def test_does_not_mutate(mdata):
    before = {
        t: (a.obs_names.copy(), a.var_names.copy(), a.layers["normalized"].copy(), a.X.copy())
        for t, a in mdata.mod.items()
    }
    obs, obsm_keys = mdata.obs.copy(), list(mdata.obsm.keys())
    train = ["d06", "d07", "d15"]
    test = [d for d in EVAL if d not in train]
    baselines = {"mean": hyfa.tl.MeanImputation(mdata, layer="normalized").fit(train)}
    res = hyfa.tl.evaluate_imputation(
        FixedPredictor(), mdata, test, SOURCES, TARGETS, baselines, layer="normalized", min_donors=5
    )
    assert set(res["method"]) == {"FixedPredictor", "mean"}
    pd.testing.assert_frame_equal(mdata.obs, obs)
    assert list(mdata.obsm.keys()) == obsm_keys
    for tissue, (obs_names, var_names, values, X) in before.items():
        assert mdata[tissue].obs_names.equals(obs_names) and mdata[tissue].var_names.equals(var_names)
        np.testing.assert_array_equal(mdata[tissue].layers["normalized"], values)
        np.testing.assert_array_equal(mdata[tissue].X, X)


def test_errors_name_the_offending_item(mdata):
    predictor = FixedPredictor()
    kwargs = {"target_tissues": TARGETS, "baselines": None, "layer": "normalized", "min_donors": 5}
    with pytest.raises(ValueError, match=r"Unknown target tissue.*'Brain'"):
        hyfa.tl.evaluate_imputation(
            predictor, mdata, EVAL, SOURCES, **{**kwargs, "target_tissues": ["C", "Brain"]}
        )
    with pytest.raises(ValueError, match=r"source tissue of setting 'blood'.*'Blood'"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, {"blood": ["Blood"]}, **kwargs)
    with pytest.raises(ValueError, match=r"not found.*'ghost'"):
        hyfa.tl.evaluate_imputation(predictor, mdata, [*EVAL, "ghost"], SOURCES, **kwargs)
    with pytest.raises(ValueError, match=r"Duplicated evaluation donors.*'d01'"):
        hyfa.tl.evaluate_imputation(predictor, mdata, ["d01", "d02", "d01"], SOURCES, **kwargs)
    with pytest.raises(ValueError, match="twice"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, {"x": ["A", "A"]}, **kwargs)
    with pytest.raises(ValueError, match=r"match_setting='all'"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, SOURCES, match_setting="all", **kwargs)
    with pytest.raises(ValueError, match="min_donors"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, SOURCES, baselines=None, min_donors=0)
    with pytest.raises(ValueError, match="No target tissue has at least 50"), pytest.warns(UserWarning):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, SOURCES, baselines=None, min_donors=50)
    with pytest.raises(ValueError, match="needs `train_donors`"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, SOURCES, baselines="default", min_donors=5)
    with pytest.raises(TypeError, match="'broken'.*no get_imputed_expression"):
        hyfa.tl.evaluate_imputation(predictor, mdata, EVAL, SOURCES, baselines={"broken": 1}, min_donors=5)
    with pytest.raises(TypeError, match="get_imputed_expression"):
        hyfa.tl.evaluate_imputation(object(), mdata, EVAL, SOURCES, **kwargs)
    with pytest.raises(ValueError, match=r"evaluation donors.*'d00'"):
        hyfa.tl.evaluate_imputation(
            predictor,
            mdata,
            EVAL,
            SOURCES,
            baselines="default",
            train_donors=["d00", "d06"],
            min_donors=5,
        )
    with pytest.raises(TypeError, match=r"\bpass `mdata`"):
        hyfa.tl.evaluate_imputation(predictor, None, EVAL, SOURCES, **kwargs)


def _tidy(values: dict) -> pd.DataFrame:
    rows = []
    for (setting, target, method), vals in values.items():
        for i, v in enumerate(vals):
            for metric in ("per-sample", "per-gene"):
                rows.append((method, setting, target, f"x{i}", metric, v, "A"))
    return pd.DataFrame(
        rows, columns=["method", "sources", "target", "id", "metric", "value", "source_tissues"]
    )


def test_summary_and_mann_whitney_match_scipy():
    rng = np.random.default_rng(3)
    hyfa_t1, teebot_t1 = rng.normal(0.5, 0.1, 40), rng.normal(0.3, 0.1, 40)  # clearly better
    hyfa_t2, teebot_t2 = rng.normal(0.2, 0.1, 30), rng.normal(0.25, 0.1, 25)  # slightly worse
    mean_t1 = np.full(40, np.nan)  # undefined everywhere
    hyfa_t3, teebot_t3 = np.array([0.1, 0.2, 0.3, np.nan]), np.array([0.0, 0.05, np.nan])
    results = _tidy(
        {
            ("blood", "T1", "HYFA"): hyfa_t1,
            ("blood", "T1", "TEEBoT"): teebot_t1,
            ("blood", "T1", "mean"): mean_t1,
            ("blood", "T2", "HYFA"): hyfa_t2,
            ("blood", "T2", "TEEBoT"): teebot_t2,
            ("blood", "T3", "HYFA"): hyfa_t3,
            ("blood", "T3", "TEEBoT"): teebot_t3,
        }
    )
    summary = hyfa.tl.summarize_evaluation(results)
    assert list(summary.columns) == [
        "sources", "metric", "target", "method", "n_donors", "n", "mean", "median", "reference",
        "reference_mean", "difference", "pvalue", "reference_better",
    ]  # fmt: skip
    s = summary[summary["metric"] == "per-gene"].set_index(["target", "method"])
    assert (s["reference"] == "HYFA").all()
    for target, ref, other in [
        ("T1", hyfa_t1, teebot_t1),
        ("T2", hyfa_t2, teebot_t2),
        ("T3", hyfa_t3, teebot_t3),
    ]:
        ref, other = ref[np.isfinite(ref)], other[np.isfinite(other)]
        expected = stats.mannwhitneyu(ref, other, alternative="two-sided").pvalue
        assert s.loc[(target, "TEEBoT"), "pvalue"] == pytest.approx(expected, rel=1e-12)
        assert s.loc[(target, "TEEBoT"), "mean"] == pytest.approx(other.mean())
        assert s.loc[(target, "TEEBoT"), "median"] == pytest.approx(np.median(other))
        assert s.loc[(target, "TEEBoT"), "reference_mean"] == pytest.approx(ref.mean())
        assert s.loc[(target, "TEEBoT"), "n"] == len(other)
        assert np.isnan(s.loc[(target, "HYFA"), "pvalue"])
    assert s.loc[("T1", "TEEBoT"), "pvalue"] < 1e-6
    assert s.loc[("T2", "TEEBoT"), "n_donors"] == 25 and s.loc[("T3", "TEEBoT"), "n_donors"] == 3
    assert list(s["reference_better"].loc[[("T1", "TEEBoT"), ("T2", "TEEBoT"), ("T3", "TEEBoT")]]) == [
        True,
        bool(hyfa_t2.mean() > teebot_t2.mean()),
        True,
    ]
    assert np.isnan(s.loc[("T1", "mean"), "mean"]) and np.isnan(s.loc[("T1", "mean"), "pvalue"])
    assert s.loc[("T1", "mean"), "n"] == 0 and not s.loc[("T1", "mean"), "reference_better"]

    wins = hyfa.tl.win_counts(summary).set_index(["metric", "method"])
    teebot = wins.loc[("per-gene", "TEEBoT")]
    p = s["pvalue"]
    assert teebot["n_targets"] == 3
    assert teebot["wins"] == 2 + int(hyfa_t2.mean() > teebot_t2.mean())
    assert teebot["significant_wins"] == int(p[("T1", "TEEBoT")] < 0.05) + int(p[("T3", "TEEBoT")] < 0.05)
    assert teebot["significant_losses"] == int(
        p[("T2", "TEEBoT")] < 0.05 and hyfa_t2.mean() < teebot_t2.mean()
    )
    assert teebot["reference_mean"] == pytest.approx(
        np.mean([hyfa_t1.mean(), hyfa_t2.mean(), np.nanmean(hyfa_t3)])
    )
    assert wins.loc[("per-gene", "mean"), "n_targets"] == 0
    # a tidy table is summarized on the fly; another reference flips the comparison
    pd.testing.assert_frame_equal(hyfa.tl.win_counts(results), hyfa.tl.win_counts(summary))
    flipped = hyfa.tl.summarize_evaluation(results, reference="TEEBoT")
    row = flipped[
        (flipped["metric"] == "per-gene") & (flipped["target"] == "T1") & (flipped["method"] == "HYFA")
    ]
    assert row["pvalue"].iloc[0] == pytest.approx(s.loc[("T1", "TEEBoT"), "pvalue"])
    assert not row["reference_better"].iloc[0]
    with pytest.raises(ValueError, match="Unknown reference method 'kNN'"):
        hyfa.tl.summarize_evaluation(results, reference="kNN")
    with pytest.raises(ValueError, match="missing column"):
        hyfa.tl.summarize_evaluation(results.drop(columns="metric"))


@pytest.fixture(scope="module")
def trained():
    """A tiny HYFA trained for a few epochs on simulated data whose tissues carry GTEx names."""
    scvi.settings.verbosity = logging.WARNING
    observed, _ = hyfa.data.simulate(n_donors=160, n_tissues=5, n_genes=10, missing_rate=0.4, seed=2)
    names = ["Whole_Blood", "Lung", "Liver", "Skin_Sun_Exposed_Lower_leg", "Heart_Left_Ventricle"]
    mods = {}
    for i, name in enumerate(names):
        a = observed.mod[f"tissue_{i}"].copy()
        a.layers["normalized"] = a.X.copy()
        a.X = np.zeros_like(a.X)
        mods[name] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData(mods)
    donors = list(mdata.obs_names)
    split = np.where(np.arange(len(donors)) % 4 == 0, "test", "train")
    mdata.obs["split"] = pd.Categorical(split)
    hyfa.HYFA.setup_mudata(mdata, layer="normalized")
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, **TINY)
    model.train(max_epochs=3, split_key="split", enable_progress_bar=False, log_every_n_steps=1)
    return model, mdata


def test_trained_model_defaults(trained):
    model, mdata = trained
    test = list(mdata.obs_names[mdata.obs["split"] == "test"])
    train = list(mdata.obs_names[mdata.obs["split"] == "train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no leakage warning
        res = hyfa.tl.evaluate_imputation(
            model, sources={"blood": ["Whole_Blood"], "all": None}, min_donors=8
        )  # test donors, registered layer, default baselines fitted on the training donors
    assert set(res.loc[res["metric"] == "per-sample", "id"]) <= set(test)
    assert list(pd.unique(res["method"])) == ["HYFA", "mean", "surrogate", "kNN", "TEEBoT"]
    assert res["value"].dropna().between(-1, 1).all()
    assert set(pd.unique(res["target"])) == {
        "Lung",
        "Liver",
        "Skin_Sun_Exposed_Lower_leg",
        "Heart_Left_Ventricle",
    }

    # reproduce the demo's per-target means (HYFA from blood, HYFA from all tissues) independently
    summary = hyfa.tl.summarize_evaluation(res)
    means = summary.set_index(["sources", "metric", "target", "method"])["mean"]
    for target in pd.unique(res["target"]):
        donors = [d for d in test if d in mdata["Whole_Blood"].obs_names and d in mdata[target].obs_names]
        truth = mdata[target][donors].copy()
        for setting, sources in (("blood", ["Whole_Blood"]), ("all", None)):
            pred = model.get_imputed_expression(target_tissues=target, source_tissues=sources, donors=donors)
            for metric, fn in (
                ("per-sample", hyfa.tl.pearson_per_sample),
                ("per-gene", hyfa.tl.pearson_per_gene),
            ):
                expected = fn(truth, pred, layer="normalized").mean()
                assert means[(setting, metric, target, "HYFA")] == pytest.approx(expected, rel=1e-5)
        teebot = hyfa.tl.TEEBoT(mdata, layer="normalized").fit(train)
        pred = teebot.get_imputed_expression(
            target_tissues=target, source_tissues=["Whole_Blood"], donors=donors
        )
        expected = hyfa.tl.pearson_per_gene(truth, pred, layer="normalized").mean()
        assert means[("blood", "per-gene", target, "TEEBoT")] == pytest.approx(expected, rel=1e-5)
        assert means[("all", "per-gene", target, "TEEBoT")] == pytest.approx(expected, rel=1e-5)


def test_trained_model_errors_and_leakage(trained):
    model, mdata = trained
    train = list(mdata.obs_names[mdata.obs["split"] == "train"])
    with pytest.raises(ValueError, match=r"Unknown target tissue.*'Brain'"):
        hyfa.tl.evaluate_imputation(model, target_tissues=["Brain"], sources="Whole_Blood", baselines=None)
    with pytest.raises(ValueError, match=r"not found.*'nobody'"):
        hyfa.tl.evaluate_imputation(model, donors=["nobody"], sources="Whole_Blood", baselines=None)
    with pytest.warns(UserWarning, match="HYFA was trained on evaluation donors"):
        hyfa.tl.evaluate_imputation(model, donors=train, sources="Whole_Blood", baselines=None, min_donors=8)
