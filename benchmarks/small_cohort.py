"""Benchmark HYFA against the baselines on small-cohort proxies (about 100 donors, 2-3 tissues), over seeds.

Issue #17: with ~100 donors and two closely related tissues, a linear map (TEEBoT) or the source tissue
itself (surrogate) can beat HYFA. Three proxies of such a cohort:

- ``brain``: the bundled GTEx data (``hyfa.data.gtex_acmg59()``, normalized with ``hyfa.pp.normalize_gtex``)
  restricted to the two GTEx brain regions sharing the most donors, and to the donors having both;
- ``skin``: the same with the two skin sites (sun-exposed lower leg, not sun-exposed suprapubic);
- ``sim``: ``hyfa.data.simulate`` with 2,000 genes, 3 tissues and every donor observed in every tissue.
  Its tissues share the donors' latent factors, each mapping them to genes through its own random
  network, and share donor x gene effects (``shared_gene_sd=0.5``), the gene-level component.

Per proxy and seed, ``--n-train`` training and ``--n-test`` test donors are drawn (disjoint); the baselines
(mean, surrogate = the source tissue, kNN with k = 20, TEEBoT with 30 components) are fitted on the training
donors, and HYFA on them too, keeping ``--validation-fraction`` (10%, as ``HYFA.train``'s default random
split) as validation donors; ``HYFA.train`` calibrates the model (by default cross-fitted over 5 folds of its
training donors, ``calibration_folds``). Each target tissue of the test donors is imputed from one source tissue (both
directions for the GTEx pairs; ``tissue_0`` -> ``tissue_1`` and ``tissue_2`` for ``sim``), scored by
``hyfa.tl.evaluate_imputation``: per-gene Pearson r (mean over genes; a gene a method predicts as a constant
scores 0 for it, not NaN, see ``constant_as_zero``) and per-sample r (mean over donors). When ``HYFA.train``
kept its cross-fitting copies as an ensemble, the trained model alone (``FinalModelAlone``) is scored too.
Prints the per-run table, the means over seeds, and per proxy the margins of HYFA over the baselines.

Examples
--------
    python benchmarks/small_cohort.py                                          # package defaults, 3 seeds
    python benchmarks/small_cohort.py --proxy sim brain --seeds 0 --max-epochs 5   # smoke test
    python benchmarks/small_cohort.py --preset quick --output small_cohort.csv
    python benchmarks/small_cohort.py --proxy brain --model-kwargs '{"dropout_rate": 0.3}' \\
        --train-kwargs '{"max_epochs": 100, "plan_kwargs": {"weight_decay": 1e-4}}'
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import quiet_training_logs

PROXIES = ("brain", "skin", "sim")
SKIN_SITES = ("Skin - Sun Exposed (Lower leg)", "Skin - Not Sun Exposed (Suprapubic)")
#: hyfa.data.simulate settings: all donors in all tissues, 4 shared donor factors, plus donor x gene
#: effects shared by the tissues (sd 0.5: gene-level signal such as a shared cis-eQTL).
SIM = {
    "n_tissues": 3,
    "n_genes": 2000,
    "n_latent": 4,
    "noise_sd": 0.3,
    "missing_rate": 0.0,
    "min_tissues": 3,
    "shared_gene_sd": 0.5,
}
BASELINES = ("surrogate", "kNN", "TEEBoT")  # the ones HYFA must match (issue #17); "mean" is shown as well
SINGLE = "HYFA, final model alone"  # without the cross-fitting ensemble (a method row when there is one)
SET_BY_BENCHMARK = {"train_donors", "validation_donors", "split_key"}


def _json_kwargs(parser, flag: str, text: str, allowed: set[str]) -> dict:
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as error:
        parser.error(f"{flag} is not valid JSON ({error}): {text!r}")
    if not isinstance(kwargs, dict):
        parser.error(f"{flag} must be a JSON object, got {text!r}")
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        parser.error(f"{flag}: unknown or reserved keys {unknown}; allowed: {', '.join(sorted(allowed))}")
    return kwargs


def parse_args(argv=None) -> argparse.Namespace:
    import lightning.pytorch
    import scvi

    import hyfa

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxy", nargs="+", choices=PROXIES, default=list(PROXIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="donor draw + training seeds")
    parser.add_argument("--n-train", type=int, default=90, help="training donors per seed")
    parser.add_argument("--n-test", type=int, default=30, help="test donors per seed (fewer if short)")
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        help="share of the training donors HYFA keeps for validation and calibration (train()'s default split)",
    )
    parser.add_argument("--preset", choices=["default", *hyfa.PRESETS], default="default")
    parser.add_argument("--model-kwargs", default="{}", help="JSON overrides of hyfa.HYFA(...) arguments")
    parser.add_argument("--train-kwargs", default="{}", help="JSON overrides of HYFA.train(...) arguments")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--output", type=Path, default=None, help="write the per-run rows to this CSV")
    args = parser.parse_args(argv)

    def names(function) -> set[str]:
        return {p.name for p in inspect.signature(function).parameters.values() if p.kind != p.VAR_KEYWORD}

    model_allowed = names(hyfa.HYFA.__init__) - {"self", "mdata"}
    train_allowed = names(hyfa.HYFA.train) | names(scvi.train.Trainer.__init__)
    train_allowed = (train_allowed | names(lightning.pytorch.Trainer.__init__)) - {"self"} - SET_BY_BENCHMARK
    args.model_kwargs = _json_kwargs(parser, "--model-kwargs", args.model_kwargs, model_allowed)
    args.train_kwargs = _json_kwargs(parser, "--train-kwargs", args.train_kwargs, train_allowed)
    return args


def gtex_pair(mdata, proxy: str) -> tuple[str, str]:
    """Return the two tissues of a GTEx proxy: the brain pair sharing most donors, or the skin sites."""
    import difflib

    import hyfa

    if proxy == "skin":
        ids = [hyfa.data.tissue_id(name) for name in SKIN_SITES]
        return tuple(difflib.get_close_matches(i, list(mdata.mod), n=1, cutoff=0.0)[0] for i in ids)
    brain = [t for t in mdata.mod if t.startswith("Brain")]
    shared = {
        (a, b): len(mdata[a].obs_names.intersection(mdata[b].obs_names))
        for i, a in enumerate(brain)
        for b in brain[i + 1 :]
    }
    return max(shared, key=shared.get)


def cohort(proxy: str, gtex, seed: int, n_train: int, n_test: int):
    """Return (mdata, layer, gene mask, train donors, test donors, {source: targets}) of one proxy and seed."""
    import mudata as md

    import hyfa

    rng = np.random.default_rng(seed)
    if proxy == "sim":
        mdata, _ = hyfa.data.simulate(n_donors=n_train + n_test, seed=seed, **SIM)
        donors = rng.permutation(mdata.obs_names)
        return mdata, None, None, list(donors[:n_train]), list(donors[n_train:]), {"tissue_0": None}
    a, b = gtex_pair(gtex, proxy)
    shared = gtex[a].obs_names.intersection(gtex[b].obs_names)
    if len(shared) <= n_train:
        raise SystemExit(f"{proxy}: only {len(shared)} donors have {a} and {b}; lower --n-train")
    donors = list(rng.permutation(shared)[: n_train + n_test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mdata = md.MuData({t: gtex[t][donors].copy() for t in (a, b)})
    return mdata, "normalized", "common", donors[:n_train], donors[n_train:], {a: [b], b: [a]}


def run_one(proxy, gtex, seed, args, model_kwargs, train_kwargs) -> tuple[pd.DataFrame, float]:
    """Train HYFA and the baselines on one draw; return the per-direction, per-method means and train time."""
    import scvi

    import hyfa

    mdata, layer, mask, train, test, directions = cohort(proxy, gtex, seed, args.n_train, args.n_test)
    scvi.settings.seed = seed
    hyfa.HYFA.setup_mudata(mdata, layer=layer, gene_mask_key=mask)
    model = hyfa.HYFA(mdata, **model_kwargs)
    start = time.perf_counter()
    n_val = int(round(args.validation_fraction * len(train)))
    validation = list(np.random.default_rng(seed).permutation(train)[:n_val])
    fit = [d for d in train if d not in set(validation)]
    model.train(
        train_donors=fit, validation_donors=validation, **{"enable_progress_bar": False, **train_kwargs}
    )
    train_s = time.perf_counter() - start
    weights = model.calibration.round(3)
    print(
        f"  {proxy}, seed {seed}: calibration "
        + "; ".join(
            f"{t}: decoder {row.decoder_weight}, skip {row.skip_weight}" for t, row in weights.iterrows()
        ),
        flush=True,
    )

    shared = hyfa.tl.default_baselines(
        mdata, train, layer=layer, gene_mask_key=mask, surrogate_tissue=None, seed=seed
    )
    if model.n_ensemble > 1:  # the kept cross-fitting copies' share, on the same trained models
        shared = {**shared, SINGLE: FinalModelAlone(model)}
    summaries = []
    for source, targets in directions.items():
        surrogate = hyfa.tl.SurrogateImputation(
            mdata, layer=layer, gene_mask_key=mask, surrogate_tissue=source
        )
        results = hyfa.tl.evaluate_imputation(
            model,
            donors=test,
            sources={source: [source]},
            target_tissues=targets,
            baselines={"surrogate": surrogate.fit(train), **shared},
            layer=layer,
            min_donors=3,
        )
        summaries.append(hyfa.tl.summarize_evaluation(constant_as_zero(results)))
    summary = pd.concat(summaries)
    table = summary.pivot_table(
        index=["sources", "target", "method"], columns="metric", values="mean", sort=False
    )
    table = table.reset_index()
    short = {
        t: t.removeprefix("Brain_").removeprefix("Skin_").removesuffix("_basal_ganglia") for t in mdata.mod
    }
    table.insert(
        0,
        "direction",
        [f"{short[s]} -> {short[t]}" for s, t in zip(table["sources"], table["target"], strict=True)],
    )
    table.insert(0, "seed", seed)
    table.insert(0, "proxy", proxy)
    table["train_s"] = np.where(table["method"] == "HYFA", train_s, np.nan)
    return table[["proxy", "seed", "direction", "method", "per-gene", "per-sample", "train_s"]], train_s


class FinalModelAlone:
    """HYFA without its kept cross-fitting ensemble: the trained model's own calibrated predictions.

    The same as ``calibrate(n_folds=..., ensemble=False)`` (the weights are fitted on the copies'
    held-out predictions either way), on the same trained model and copies: a paired comparison.
    """

    def __init__(self, model):
        self.model = model

    def get_imputed_expression(self, **kwargs):
        states, self.model.fold_models_ = self.model.fold_models_, None
        try:
            return self.model.get_imputed_expression(**kwargs)
        finally:
            self.model.fold_models_ = states


def constant_as_zero(results: pd.DataFrame) -> pd.DataFrame:
    """Score 0, not NaN, the per-gene r of a method predicting a constant for a gene another method scores.

    ``hyfa.tl.summarize_evaluation`` averages finite scores: a method that predicts a gene's mean for
    every donor (HYFA with its decoder calibrated away and the gene's skip coefficient at 0) would
    otherwise leave that gene out of its mean, and be compared with the others on fewer genes.
    """
    scored = results.groupby(["metric", "sources", "target", "id"])["value"].transform("count") > 0
    fill = (results["metric"] == "per-gene") & results["value"].isna() & scored
    return results.assign(value=results["value"].mask(fill, 0.0))


def margin_lines(rows: pd.DataFrame) -> list[str]:
    """Per proxy: HYFA's per-gene r minus the best baseline's, and per-sample r minus TEEBoT's (seed means)."""
    lines = []
    for proxy, part in rows.groupby("proxy", sort=False):
        means = part.groupby("method")[["per-gene", "per-sample"]].mean()
        best = means.loc[[m for m in BASELINES if m in means.index], "per-gene"].idxmax()
        gene = means.loc["HYFA", "per-gene"] - means.loc[best, "per-gene"]
        sample = means.loc["HYFA", "per-sample"] - means.loc["TEEBoT", "per-sample"]
        lines.append(
            f"{proxy}: HYFA per-gene r - best baseline: {gene:+.3f}; HYFA per-sample r - TEEBoT: {sample:+.3f}"
            f"   [best baseline per gene: {best}]"
        )
        if SINGLE in means.index:
            gain = means.loc["HYFA"] - means.loc[SINGLE]
            lines.append(
                f"{proxy}: HYFA - {SINGLE} (the ensemble's gain): per-gene {gain['per-gene']:+.3f}, "
                f"per-sample {gain['per-sample']:+.3f}"
            )
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_training_logs()

    import torch

    import hyfa

    torch.set_num_threads(args.threads)
    preset = hyfa.preset(args.preset) if args.preset != "default" else None
    model_kwargs = {**(preset.model if preset else {}), **args.model_kwargs}
    train_kwargs = {**(preset.train if preset else {}), **args.train_kwargs}
    if args.max_epochs is not None:
        train_kwargs["max_epochs"] = args.max_epochs
    epochs = train_kwargs.get(
        "max_epochs", inspect.signature(hyfa.HYFA.train).parameters["max_epochs"].default
    )
    print(f"HYFA preset {args.preset!r}, {epochs} epochs; model {model_kwargs or 'defaults'}")
    print(f"training {train_kwargs or 'defaults'}; {args.n_train} train / {args.n_test} test donors per seed")

    gtex = None
    if {"brain", "skin"} & set(args.proxy):
        gtex = hyfa.data.gtex_acmg59()
        hyfa.pp.normalize_gtex(gtex)
    for proxy in args.proxy:
        if proxy == "sim":
            print(
                f"sim: hyfa.data.simulate({', '.join(f'{k}={v}' for k, v in SIM.items())}), seed = run seed"
            )
        else:
            a, b = gtex_pair(gtex, proxy)
            n = len(gtex[a].obs_names.intersection(gtex[b].obs_names))
            print(f"{proxy}: {a} and {b} ({n} donors have both)")

    tables = []
    for proxy in args.proxy:
        for seed in args.seeds:
            table, train_s = run_one(proxy, gtex, seed, args, model_kwargs, train_kwargs)
            print(f"  {proxy}, seed {seed}: HYFA trained in {train_s:.1f} s", flush=True)
            tables.append(table)
    rows = pd.concat(tables, ignore_index=True)

    pd.set_option("display.width", 250)
    pd.set_option("display.max_rows", 500)
    print("\n== per run (mean over genes / test donors)")
    print(rows.round(3).to_string(index=False))
    print(f"\n== mean over seeds {args.seeds} (sd in brackets)")
    grouped = rows.groupby(["proxy", "direction", "method"], sort=False)
    summary = grouped[["per-gene", "per-sample", "train_s"]].mean().round(3)
    spread = grouped[["per-gene", "per-sample"]].std().round(3)
    for metric in ("per-gene", "per-sample"):
        summary[metric] = [f"{m:.3f} ({s:.3f})" for m, s in zip(summary[metric], spread[metric], strict=True)]
    print(summary.reset_index().to_string(index=False))
    print("\n" + "\n".join(margin_lines(rows)))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.output, index=False)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
