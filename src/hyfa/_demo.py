"""``hyfa demo``: train on the bundled GTEx data and score imputation of held-out donors."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: Named presets of model and training hyperparameters.
PRESETS: dict[str, dict] = {
    "quick": {
        "model": {
            "n_metagenes": 10,
            "n_factors": 32,
            "n_heads": 8,
            "n_head_dim": 16,
            "n_donor_latent": 64,
            "n_tissue_latent": 32,
            "n_metagene_latent": 16,
            "n_hidden_decoder": 128,
        },
        "train": {"max_epochs": 120, "lr": 2e-3, "batch_size": 63},
    },
    "paper": {"model": {}, "train": {"max_epochs": 200, "batch_size": 63}},
}

BLOOD = "Whole_Blood"


def _mean_or_nan(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.mean()) if len(values) else float("nan")


def evaluate_demo_targets(model, mdata, baselines: dict, test_donors, min_donors: int = 25) -> pd.DataFrame:
    """Return a per-tissue table of mean per-sample and per-gene Pearson r for HYFA and baselines.

    Targets are tissues with at least ``min_donors`` test donors that have whole blood and the
    target. HYFA predicts each from whole blood alone and from all of the donor's other tissues;
    the baselines are fitted on training donors.
    """
    from . import tl
    from ._constants import REGISTRY_KEYS

    observed = pd.DataFrame(
        np.asarray(model.adata_manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY)) > 0,
        index=mdata.obs_names,
        columns=model.tissues,
    )
    rows = []
    for target in model.tissues:
        if target == BLOOD:
            continue
        have = observed.loc[test_donors]
        donors = list(have.index[have[target] & have[BLOOD]])
        if len(donors) < min_donors:
            continue
        truth = mdata.mod[target][donors]
        truth = truth[:, model.genes]
        predictions = {
            "HYFA (blood)": model.get_imputed_expression(
                target_tissues=target, source_tissues=[BLOOD], donors=donors
            ),
            "HYFA (all)": model.get_imputed_expression(target_tissues=target, donors=donors),
        }
        for name, baseline in baselines.items():
            predictions[name] = baseline.get_imputed_expression(target_tissues=target, donors=donors)
        row = {"tissue": target, "n_donors": len(donors)}
        for name, pred in predictions.items():
            row[f"{name} per-sample r"] = _mean_or_nan(tl.pearson_per_sample(truth, pred, layer="normalized"))
            row[f"{name} per-gene r"] = _mean_or_nan(tl.pearson_per_gene(truth, pred, layer="normalized"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("tissue")


def run_demo(preset: str = "quick", max_epochs: int | None = None, seed: int = 0, min_donors: int = 25):
    """Run the demo and return ``(table, timings)``; see ``hyfa demo --help``."""
    import scvi

    from . import data, pp, tl
    from .model import HYFA

    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose from {list(PRESETS)}.")
    timings = {}
    scvi.settings.seed = seed
    start = time.perf_counter()
    mdata = data.gtex_acmg59(cohort="paper")
    pp.normalize_gtex(mdata)
    timings["load + normalize"] = time.perf_counter() - start

    HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    model = HYFA(mdata, **PRESETS[preset]["model"])
    train_kwargs = dict(PRESETS[preset]["train"])
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
    table = evaluate_demo_targets(model, mdata, baselines, test_donors, min_donors=min_donors)
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
