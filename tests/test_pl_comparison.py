"""hyfa.pl.imputation_comparison."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.patches import PathPatch
from scipy import stats

import hyfa

TARGETS = ["Lung", "Liver", "Heart"]
CENTRES = {"HYFA": 0.5, "TEEBoT": 0.3, "mean": 0.0}
COLUMNS = ["method", "sources", "target", "id", "metric", "value", "source_tissues", "source_setting"]


def _results() -> pd.DataFrame:
    """Tidy table in the layout of evaluate_imputation: settings "blood" and "all" (baselines reused)."""
    rng = np.random.default_rng(0)
    rows = []
    for k, target in enumerate(TARGETS):
        for method, centre in CENTRES.items():
            for metric, n in (("per-sample", 30), ("per-gene", 20)):
                values = rng.normal(centre - 0.1 * k, 0.05, n)
                if method == "mean" and metric == "per-gene":
                    values[:] = np.nan  # undefined, as for mean imputation
                for setting in ("blood", "all"):
                    shifted = values + 0.2 if (method == "HYFA" and setting == "all") else values
                    own = method == "HYFA" or setting == "blood"
                    label = "Whole_Blood" if method != "HYFA" or setting == "blood" else "all other collected"
                    origin = setting if own else "blood"  # baselines of "all": reused from "blood"
                    rows += [
                        (method, setting, target, f"id{i}", metric, v, label, origin)
                        for i, v in enumerate(shifted)
                    ]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def results():
    return _results()


def _boxes(ax):
    return [p for p in ax.patches if isinstance(p, PathPatch)]


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_one_group_per_target(results):
    ax = hyfa.pl.imputation_comparison(results, metric="per-sample", sources="blood", show=False)
    assert isinstance(ax, plt.Axes)
    assert [t.get_text() for t in ax.get_xticklabels()] == TARGETS
    np.testing.assert_array_equal(ax.get_xticks(), [0, 1, 2])
    assert _legend(ax) == ["HYFA", "TEEBoT", "mean"]
    boxes = _boxes(ax)
    assert len(boxes) == len(TARGETS) * 3
    # each box sits in its target's group (x within 0.4 of the tick) and methods keep their order
    centres = [b.get_path().vertices[:, 0].mean() for b in boxes]
    for j in range(3):  # boxplot is drawn method by method
        group = centres[j * 3 : (j + 1) * 3]
        np.testing.assert_allclose(np.round(group), [0, 1, 2])
        assert all(abs(c - round(c)) < 0.4 for c in group)
    # the box of HYFA for Lung spans the quartiles of its per-sample scores
    lung = results.query(
        "method == 'HYFA' and sources == 'blood' and target == 'Lung' and metric == 'per-sample'"
    )
    q1, q3 = np.percentile(lung["value"], [25, 75])
    ys = boxes[0].get_path().vertices[:, 1]
    assert ys.min() == pytest.approx(q1) and ys.max() == pytest.approx(q3)
    assert ax.get_ylabel() == "per-sample Pearson r"
    plt.close(ax.figure)


def test_undefined_scores_are_skipped_and_settings_combined(results):
    ax = hyfa.pl.imputation_comparison(results, metric="per-gene", sources=["blood", "all"], show=False)
    # baselines repeated in "all" are drawn once; HYFA appears once per setting
    # mean imputation has no defined per-gene r: left out, 3 boxes per target
    assert _legend(ax) == ["HYFA (blood)", "TEEBoT", "HYFA (all)"]
    assert len(_boxes(ax)) == len(TARGETS) * 3
    plt.close(ax.figure)


def _box_ranges(ax):
    """Return (q1, q3) of each box, in the order drawn (label by label, target by target)."""
    return [(b.get_path().vertices[:, 1].min(), b.get_path().vertices[:, 1].max()) for b in _boxes(ax)]


def _quartiles(results, method, setting, target, metric="per-sample"):
    rows = results[
        (results["method"] == method)
        & (results["sources"] == setting)
        & (results["target"] == target)
        & (results["metric"] == metric)
    ]
    return tuple(np.percentile(rows["value"], [25, 75]))


def test_reused_rows_follow_the_marker(results):
    # reused rows are drawn once, at the setting that predicted them, whatever the order of `sources`
    for shown in (["blood", "all"], ["all", "blood"]):
        ax = hyfa.pl.imputation_comparison(results, "per-sample", sources=shown, show=False)
        labels = _legend(ax)
        assert sorted(labels) == ["HYFA (all)", "HYFA (blood)", "TEEBoT", "mean"]
        ranges = _box_ranges(ax)
        teebot = ranges[labels.index("TEEBoT") * len(TARGETS)]  # first target: Lung
        assert teebot == pytest.approx(_quartiles(results, "TEEBoT", "blood", "Lung"))
        plt.close(ax.figure)
    # alone, the variable setting draws its reused rows
    ax = hyfa.pl.imputation_comparison(results, "per-sample", sources="all", show=False)
    assert _legend(ax) == ["HYFA", "TEEBoT", "mean"]
    assert _box_ranges(ax)[len(TARGETS)] == pytest.approx(_quartiles(results, "TEEBoT", "all", "Lung"))
    plt.close(ax.figure)
    # rows predicted in their own setting are drawn per setting, even with the same scores
    own = results.assign(source_setting=results["sources"])
    ax = hyfa.pl.imputation_comparison(own, "per-sample", sources=["blood", "all"], show=False)
    assert _legend(ax) == [
        "HYFA (blood)", "TEEBoT (blood)", "mean (blood)", "HYFA (all)", "TEEBoT (all)", "mean (all)",
    ]  # fmt: skip
    plt.close(ax.figure)
    # a table without the marker is drawn as it is: every setting's rows
    ax = hyfa.pl.imputation_comparison(
        results.drop(columns="source_setting"), "per-sample", sources=["blood", "all"], show=False
    )
    assert len(_legend(ax)) == 6
    plt.close(ax.figure)


def test_methods_targets_sort_and_annotate(results):
    ax = hyfa.pl.imputation_comparison(
        results,
        metric="per-sample",
        sources=["blood", "all"],
        methods=["TEEBoT", "HYFA"],
        targets=["Heart", "Lung"],
        annotate="TEEBoT",
        reference="HYFA (all)",
        sort=True,
        show=False,
    )
    # sorted by the median of the reference box: Lung (centre 0.7) before Heart (0.5)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Lung", "Heart"]
    assert _legend(ax) == ["TEEBoT", "HYFA (blood)", "HYFA (all)"]
    stars = [t.get_text() for t in ax.texts]
    assert len(stars) == 2
    for target, star in zip(["Lung", "Heart"], stars, strict=True):
        sel = results[(results["metric"] == "per-sample") & (results["target"] == target)]
        ref = sel.query("method == 'HYFA' and sources == 'all'")["value"]
        other = sel.query("method == 'TEEBoT' and sources == 'blood'")["value"]
        p = stats.mannwhitneyu(ref, other, alternative="two-sided").pvalue
        assert p <= 1e-4 and star == "****"
    plt.close(ax.figure)


def test_stars():
    from hyfa.pl._comparison import _stars

    assert [_stars(p) for p in (0.2, 0.05, 0.04, 0.01, 0.002, 1e-3, 1e-4, 1e-9, np.nan)] == [
        "ns",
        "*",
        "*",
        "**",
        "**",
        "***",
        "****",
        "****",
        "",
    ]


def test_ax_and_save(results, tmp_path):
    fig, (left, right) = plt.subplots(1, 2)
    out = hyfa.pl.imputation_comparison(results, sources="all", ax=right, save=tmp_path / "cmp.png")
    assert out is right  # not shown: an ax was given
    assert (tmp_path / "cmp.png").stat().st_size > 0
    assert len(_boxes(left)) == 0 and len(_boxes(right)) > 0
    plt.close(fig)


def test_errors(results):
    with pytest.raises(ValueError, match="several source settings.*'blood'"):
        hyfa.pl.imputation_comparison(results, show=False)
    with pytest.raises(ValueError, match="Unknown source setting.*'accessible'"):
        hyfa.pl.imputation_comparison(results, sources="accessible", show=False)
    with pytest.raises(ValueError, match="Unknown metric 'r2'"):
        hyfa.pl.imputation_comparison(results, metric="r2", sources="blood", show=False)
    with pytest.raises(ValueError, match="Unknown method.*'kNN'"):
        hyfa.pl.imputation_comparison(results, sources="blood", methods=["HYFA", "kNN"], show=False)
    with pytest.raises(ValueError, match="'Brain'"):
        hyfa.pl.imputation_comparison(results, sources="blood", targets=["Brain"], show=False)
    with pytest.raises(ValueError, match="not a box label.*'HYFA'"):
        hyfa.pl.imputation_comparison(results, sources="blood", annotate="kNN", show=False)
    with pytest.raises(ValueError, match="No defined per-gene scores"):
        hyfa.pl.imputation_comparison(results, sources="blood", methods=["mean"], show=False)
    with pytest.raises(ValueError, match="no colour for.*'mean'"):
        hyfa.pl.imputation_comparison(
            results, "per-sample", sources="blood", palette={"HYFA": "red", "TEEBoT": "b"}, show=False
        )
    plt.close("all")
