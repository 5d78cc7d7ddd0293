"""``hyfa demo``: train on the bundled GTEx data and score imputation of held-out donors."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ._presets import PRESETS  # noqa: F401 - re-exported: hyfa <= 0.1 imported it from here

logger = logging.getLogger(__name__)

BLOOD = "Whole_Blood"
#: Source settings of the demo: whole blood alone, and all of each donor's other collected tissues.
SOURCES = {"blood": [BLOOD], "all": None}
#: The metrics of :func:`hyfa.tl.evaluate_imputation`, in the order of the table's columns.
METRICS = ("per-sample", "per-gene")


def demo_table(summary: pd.DataFrame, baselines: Iterable[str]) -> pd.DataFrame:
    """Return the demo's per-tissue table from the :func:`hyfa.tl.summarize_evaluation` of its evaluation.

    One row per target tissue: ``n_donors`` (test donors having whole blood and the target), then a
    ``"{method} {metric} r"`` column of mean Pearson r for HYFA in each source setting of
    :data:`SOURCES` (``"HYFA (blood)"``, ``"HYFA (all)"``) and for each of the named ``baselines``,
    which predict from whole blood.
    """
    rows = summary[(summary["sources"] == "blood") | (summary["method"] == "HYFA")]
    method = np.where(rows["method"] == "HYFA", "HYFA (" + rows["sources"] + ")", rows["method"])
    rows = rows.assign(column=method + " " + rows["metric"] + " r")
    table = rows.pivot_table(index="target", columns="column", values="mean", sort=False, dropna=False)
    methods = [f"HYFA ({setting})" for setting in SOURCES] + list(baselines)
    table = table[[f"{m} {metric} r" for m in methods for metric in METRICS]]
    table.insert(0, "n_donors", rows.groupby("target", sort=False)["n_donors"].max())
    table.index.name, table.columns.name = "tissue", None
    return table


def run_demo(preset: str = "quick", max_epochs: int | None = None, seed: int = 0, min_donors: int = 25):
    """Run the demo and return ``(table, timings, model)``; see ``hyfa demo --help``."""
    import scvi

    from . import data, pp, tl
    from ._presets import preset as get_preset
    from .model import HYFA

    chosen = get_preset(preset)
    timings = {}
    scvi.settings.seed = seed
    start = time.perf_counter()
    mdata = data.gtex_acmg59(cohort="paper")
    pp.normalize_gtex(mdata)
    timings["load + normalize"] = time.perf_counter() - start

    HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    model = HYFA(mdata, **chosen.model)
    train_kwargs = chosen.train
    if max_epochs is not None:
        train_kwargs["max_epochs"] = max_epochs
    start = time.perf_counter()
    model.train(split_key="split", **train_kwargs)
    timings["train"] = time.perf_counter() - start

    split = mdata.obs["split"].astype(str)
    test_donors = list(mdata.obs_names[split == "test"])
    train_donors = list(mdata.obs_names[split == "train"])
    seen = set(mdata.obs_names[model.train_indices_]) | set(mdata.obs_names[model.validation_indices_])
    if seen & set(test_donors):
        raise AssertionError("Test donors were used in training.")

    start = time.perf_counter()
    baselines = {
        "mean": tl.MeanImputation(mdata, layer="normalized", gene_mask_key="common").fit(train_donors),
        "blood surrogate": tl.SurrogateImputation(
            mdata, layer="normalized", gene_mask_key="common", surrogate_tissue=BLOOD
        ).fit(train_donors),
    }
    results = tl.evaluate_imputation(
        model,
        mdata,
        donors=test_donors,
        sources=SOURCES,
        baselines=baselines,
        layer="normalized",
        min_donors=min_donors,
    )
    table = demo_table(tl.summarize_evaluation(results), baselines)
    timings["impute + evaluate"] = time.perf_counter() - start
    return table, timings, model


def format_table(table: pd.DataFrame) -> str:
    """Return the demo table and summary lines as text."""
    lines = [table.round(3).to_string(), ""]
    methods = [c.removesuffix(" per-sample r") for c in table.columns if c.endswith(" per-sample r")]
    for metric in ("per-sample r", "per-gene r"):
        means = {m: table[f"{m} {metric}"].mean() for m in methods}
        lines.append(
            f"mean {metric} over {len(table)} tissues: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
        )
        for hyfa in (m for m in methods if m.startswith("HYFA")):
            for other in methods:
                column = table[f"{other} {metric}"]
                if (
                    other == hyfa
                    or column.isna().all()
                    or (other.startswith("HYFA") and hyfa.endswith("(blood)"))
                ):
                    continue
                wins = int((table[f"{hyfa} {metric}"] > column).sum())
                lines.append(f"  {metric}: {hyfa} > {other} in {wins}/{len(table)} tissues")
    lines.append("(mean imputation predicts one profile for every donor: its per-gene r is undefined)")
    return "\n".join(lines)
