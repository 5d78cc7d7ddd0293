"""Benchmark HYFA against the baselines on the bundled GTEx v8 ACMG-59 data, with the paper's protocol.

Loads ``hyfa.data.gtex_acmg59()`` (the paper's train / validation / test donors in ``obs["split"]``),
normalizes it with ``hyfa.pp.normalize_gtex``, trains HYFA on the training donors (validating on the
validation donors), fits the baselines (mean, whole-blood surrogate, kNN with k = 20, TEEBoT with 30
components) on the training donors, and evaluates imputation of the test donors in the three source
settings of Viñas et al. (2023): whole blood alone, the four accessible tissues, and all of each donor's
other collected tissues (on the whole-blood donors; the baselines there are their whole-blood versions).

Prints the per-tissue table of mean Pearson r for each setting and lines such as
"per-gene Pearson: HYFA > TEEBoT in 31/38 tissues", and writes the tidy scores (``--output``) plus
``<output stem>_summary.csv`` (per-target means, Mann-Whitney-Wilcoxon p-values) and
``<output stem>_wins.csv``.

Examples
--------
    python benchmarks/gtex_acmg59.py                                 # package defaults
    python benchmarks/gtex_acmg59.py --preset quick --max-epochs 3   # smoke test
    python benchmarks/gtex_acmg59.py --preset paper --output paper.csv
    python benchmarks/gtex_acmg59.py --max-epochs 20 --precision bf16-mixed  # vs float32, same seed
    python benchmarks/gtex_acmg59.py --preset quick --max-epochs 240 --source-count-exponent 1
    python benchmarks/gtex_acmg59.py --preset quick --model-kwargs '{"gene_skip": true}'
    python benchmarks/gtex_acmg59.py --preset quick --compare-calibration   # calibration on vs off
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import time
from pathlib import Path

import pandas as pd
from _measure import quiet_training_logs

METRIC_NAMES = {"per-gene": "per-gene Pearson", "per-sample": "per-sample Pearson"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset",
        choices=["default", "quick", "paper"],
        default="default",
        help="model/training hyperparameters: the package defaults, or a preset of hyfa._demo.PRESETS",
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="override the number of training epochs")
    parser.add_argument("--seed", type=int, default=0, help="scvi-tools seed (model initialization, batches)")
    parser.add_argument("--min-donors", type=int, default=25, help="minimum test donors per target tissue")
    parser.add_argument(
        "--output", type=Path, default=Path("gtex_acmg59_scores.csv"), help="CSV of the tidy scores"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's choice); 1 helps on busy machines",
    )
    parser.add_argument(
        "--source-count-exponent",
        type=float,
        default=None,
        help="override HYFA's source_count_exponent (1: the paper's uniform number of source tissues)",
    )
    parser.add_argument(
        "--precision",
        default=None,
        help='Lightning training precision, e.g. "bf16-mixed" (default: float32)',
    )
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help="JSON of further hyfa.HYFA keyword arguments, e.g. '{\"gene_skip\": true}'",
    )
    parser.add_argument(
        "--compare-calibration",
        action="store_true",
        help="also score the same trained model calibrated on the validation donors (HYFA.calibrate; "
        "method 'calibrated'), or uncalibrated if training calibrated it",
    )
    parser.add_argument("--plot", type=Path, default=None, help="save per-gene comparison plots to this stem")
    return parser.parse_args(argv)


def train_model(
    mdata,
    preset: str,
    max_epochs: int | None,
    seed: int,
    precision: str | None = None,
    source_count_exponent: float | None = None,
    extra_model_kwargs: dict | None = None,
):
    import scvi

    import hyfa
    from hyfa._demo import PRESETS

    scvi.settings.seed = seed
    hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    model_kwargs, train_kwargs = (
        ({}, {})
        if preset == "default"
        else (
            dict(PRESETS[preset]["model"]),
            dict(PRESETS[preset]["train"]),
        )
    )
    if max_epochs is not None:
        train_kwargs["max_epochs"] = max_epochs
    if precision is not None:
        train_kwargs["precision"] = precision
    if source_count_exponent is not None:
        model_kwargs["source_count_exponent"] = source_count_exponent
    model_kwargs.update(extra_model_kwargs or {})
    model = hyfa.HYFA(mdata, **model_kwargs)
    model.train(split_key="split", enable_progress_bar=False, **train_kwargs)
    return model, model_kwargs, train_kwargs


def per_tissue_table(summary: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Wide table of one setting: rows = targets, columns = (metric, method) means, plus n donors."""
    rows = summary[summary["sources"] == setting]
    table = rows.pivot_table(index="target", columns=["metric", "method"], values="mean", sort=False)
    order = [m for m in ("per-gene", "per-sample") if m in table.columns.get_level_values(0)]
    table = table[order]
    n = rows.groupby("target", sort=False)["n_donors"].max()
    table.insert(0, ("", "n"), n.loc[table.index])
    return table


def summary_lines(wins: pd.DataFrame, setting: str) -> list[str]:
    lines = []
    for row in wins[wins["sources"] == setting].itertuples():
        metric = METRIC_NAMES.get(row.metric, row.metric)
        if row.n_targets == 0:
            lines.append(f"  {metric}: {row.method} undefined (constant predictions)")
            continue
        lines.append(
            f"  {metric}: {row.reference} > {row.method} in {row.wins}/{row.n_targets} tissues "
            f"(P < 0.05: {row.significant_wins} better, {row.significant_losses} worse; "
            f"mean {row.reference_mean:.3f} vs {row.method_mean:.3f})"
        )
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    quiet_training_logs()

    import hyfa

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    timings = {}
    start = time.perf_counter()
    mdata = hyfa.data.gtex_acmg59()
    hyfa.pp.normalize_gtex(mdata)
    timings["load + normalize"] = time.perf_counter() - start

    split = mdata.obs["split"].astype(str)
    train = list(mdata.obs_names[split == "train"])
    test = list(mdata.obs_names[split == "test"])
    covariates = [c for c in ("age", "sex") if c in mdata.obs.columns]

    start = time.perf_counter()
    model, model_kwargs, train_kwargs = train_model(
        mdata,
        args.preset,
        args.max_epochs,
        args.seed,
        args.precision,
        args.source_count_exponent,
        args.model_kwargs,
    )
    timings["train HYFA"] = time.perf_counter() - start
    epochs = train_kwargs.get(
        "max_epochs", inspect.signature(hyfa.HYFA.train).parameters["max_epochs"].default
    )

    start = time.perf_counter()
    baselines = hyfa.tl.default_baselines(
        mdata,
        train,
        layer="normalized",
        gene_mask_key="common",
        covariate_keys=covariates or None,
        surrogate_tissue="Whole_Blood",
    )
    score = functools.partial(
        hyfa.tl.evaluate_imputation,
        model,
        donors=test,
        sources=hyfa.tl.PAPER_SOURCES,
        layer="normalized",
        min_donors=args.min_donors,
    )
    results = score(baselines=baselines)
    if args.compare_calibration:  # the same network with the other calibration state: a paired comparison
        saved = {k: v.clone() for k, v in model.module.calibration.state_dict().items()}
        if model.module.calibration.is_identity:
            other, table = "calibrated", model.calibrate()
        else:
            other, table = "uncalibrated", model.calibration
            model.module.calibration.reset()
        print("calibration weights over tissues:")
        print(
            table[["decoder_weight", "skip_weight"]]
            .describe()
            .loc[["min", "50%", "max"]]
            .round(3)
            .to_string()
        )
        compared = score(baselines=None, name=other)
        model.module.calibration.load_state_dict(saved)
        results = pd.concat([results, compared], ignore_index=True)
    timings["fit baselines + evaluate"] = time.perf_counter() - start
    summary = hyfa.tl.summarize_evaluation(results)
    wins = hyfa.tl.win_counts(summary)

    print(
        f"GTEx v8 ACMG-59: {mdata.n_obs} donors ({len(train)} train, {len(test)} test), "
        f"{len(mdata.mod)} tissues, {len(model.genes)} genes"
    )
    print(
        f"HYFA preset {args.preset!r}, {epochs} epochs, seed {args.seed}; model {model_kwargs or 'defaults'}"
    )
    print(f"training {train_kwargs or 'defaults'}")
    print(
        "baseline covariates: "
        + (", ".join(covariates) if covariates else "none (the bundled data has no age or sex)")
    )
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 50)
    for setting, tissues in hyfa.tl.PAPER_SOURCES.items():
        if setting not in set(summary["sources"]):
            print(f"\n== {setting}: no target tissue with >= {args.min_donors} test donors")
            continue
        described = (
            "each donor's other collected tissues (on the whole-blood donors)"
            if tissues is None
            else (", ".join(tissues))
        )
        print(f"\n== sources: {setting} ({described})")
        print(per_tissue_table(summary, setting).round(3).to_string())
        print(f"mean over {summary[summary['sources'] == setting]['target'].nunique()} target tissues:")
        print("\n".join(summary_lines(wins, setting)))
    print("\ntimings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))

    output = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(output, index=False)
    summary.to_csv(output.with_name(output.stem + "_summary.csv"), index=False)
    wins.to_csv(output.with_name(output.stem + "_wins.csv"), index=False)
    print(f"wrote {output}, {output.stem}_summary.csv and {output.stem}_wins.csv")

    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        for setting in pd.unique(results["sources"]):
            shown = [setting] if setting != "all" else ["whole blood", "all"]
            path = args.plot.with_name(f"{args.plot.stem}_{setting.replace(' ', '_')}.png")
            reference = "HYFA (all)" if setting == "all" else "HYFA"
            hyfa.pl.imputation_comparison(
                results,
                metric="per-gene",
                sources=shown,
                annotate="TEEBoT",
                reference=reference,
                show=False,
                save=path,
            )
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
