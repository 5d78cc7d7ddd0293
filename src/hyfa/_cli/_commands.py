"""What each ``hyfa`` command does: ``demo``, ``train``, ``impute``, ``merge`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ._common import (
    CLI_RECORD,
    CLIError,
    _devices,
    _existing_file,
    _global_rank,
    _output,
    _parse_chunk,
    _parse_params,
    _quiet_scvi,
    _read_mudata,
    _read_names,
    donor_chunk,
)


def _demo(args: argparse.Namespace) -> int:
    from hyfa import _demo as demo

    _quiet_scvi()
    start = time.perf_counter()
    table, timings, _ = demo.run_demo(preset=args.preset, max_epochs=args.max_epochs, seed=args.seed)
    print(demo.format_table(table))
    print()
    print(
        "time: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
        + f"; total {time.perf_counter() - start:.1f} s"
    )
    if args.output:
        table.to_csv(args.output)
        print(f"table written to {args.output}")
    return 0


DEMO_HELP = """Train HYFA on the bundled GTEx v8 excerpt (59 ACMG genes, 834 donors, 49 tissues, the paper's
donor split) and impute every test donor's tissues from whole blood alone and from all of the
donor's other tissues. Prints, per target tissue with >= 25 test donors having blood and the
target, the mean per-sample and per-gene Pearson r of HYFA, mean imputation and the blood
surrogate on the normalized data (hyfa.pp.normalize_gtex, 55 common genes).

Presets (hyfa.PRESETS):
  quick  n_metagenes=10, n_factors=32, n_heads=8, n_head_dim=16, n_donor_latent=64,
         n_tissue_latent=32, n_metagene_latent=16, n_hidden_decoder=128, 2 graph layers,
         dropout 0.174, no normalization layers, source_count_exponent=3 (the default);
         Adam lr 2e-3, 200 epochs, the default batch size (63 donors for the demo's 500
         training donors); about 1.5 minutes on 2 CPU cores.
  paper  the paper's tuned configuration (50 metagenes x 98, 28 heads x 28, lr 4.56e-4,
         63 donors per batch, 200 epochs, uniform number of source tissues:
         source_count_exponent=1, no gene-level skip, no calibration); slow on a CPU.
"""

# -- hyfa train ----------------------------------------------------------------------------------

TRAIN_HELP = """Train HYFA on a MuData file (one modality per tissue, donors as obs) and save the model.

The model directory is what hyfa.HYFA.save writes (model.pt, without the data) plus
hyfa_train.json, a record of this command's arguments; load it in Python with
hyfa.HYFA.load(MODEL_DIR, mdata) or use it with `hyfa impute` / `hyfa evaluate`.

Hyperparameters: --preset gives a named set (hyfa.PRESETS: `quick` for gene panels of tens to a
few hundred genes, `paper` for transcriptome-wide data); without it, hyfa.HYFA's defaults (the
paper's architecture) apply. --model-param NAME=VALUE and --max-epochs / --lr / --batch-size
override single values.

Donor split: --split-key COLUMN (mdata.obs values "train", "val"/"validation"; other donors are
held out as test donors), or --train-donors FILE [--validation-donors FILE] (one name per line),
else a random 90/10 split of all donors.

Example (4 GPUs on one node; see the docs' "GPUs and clusters" page for SLURM):
  hyfa train gtex.h5mu model_dir --layer normalized --gene-mask-key common \\
      --split-key split --preset paper --accelerator gpu --devices 4 --strategy ddp
"""


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    data = _existing_file(parser, args.data, "input MuData")
    out = _output(parser, args.model_dir, args.overwrite)
    model_params = _parse_params(parser, args.model_param)
    train_donors = _read_names(parser, args.train_donors, "--train-donors file")
    validation_donors = _read_names(parser, args.validation_donors, "--validation-donors file")
    if validation_donors is not None and train_donors is None:
        parser.error("--validation-donors needs --train-donors")

    import scvi

    from hyfa import HYFA
    from hyfa._presets import preset

    _quiet_scvi()
    scvi.settings.seed = args.seed
    mdata = _read_mudata(data)
    HYFA.setup_mudata(
        mdata,
        layer=args.layer,
        tissues=args.tissues,
        gene_mask_key=args.gene_mask_key,
        categorical_covariate_keys=args.categorical_covariate_keys,
        continuous_covariate_keys=args.continuous_covariate_keys,
    )
    chosen = preset(args.preset) if args.preset else None
    model_kwargs = {**(chosen.model if chosen else {}), **model_params}
    train_kwargs = chosen.train if chosen else {}
    for key in ("max_epochs", "lr", "batch_size"):
        if getattr(args, key) is not None:
            train_kwargs[key] = getattr(args, key)
    trainer_kwargs = {}
    if args.strategy is not None:
        trainer_kwargs["strategy"] = args.strategy
    if args.num_nodes != 1:
        trainer_kwargs["num_nodes"] = args.num_nodes
    if args.precision is not None:
        trainer_kwargs["precision"] = args.precision
    model = HYFA(mdata, **model_kwargs)
    start = time.perf_counter()
    model.train(
        train_donors=train_donors,
        validation_donors=validation_donors,
        split_key=args.split_key,
        early_stopping=args.early_stopping,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        enable_progress_bar=not args.no_progress_bar,
        **train_kwargs,
        **trainer_kwargs,
    )
    seconds = time.perf_counter() - start
    if _global_rank() != 0:
        return 0  # another process of a multi-process (DDP) run: the first one saves the model
    model.save(str(out), overwrite=args.overwrite, save_anndata=False)
    record = {
        "data": str(data),
        "setup_mudata": {
            "layer": args.layer,
            "tissues": args.tissues,
            "gene_mask_key": args.gene_mask_key,
            "categorical_covariate_keys": args.categorical_covariate_keys,
            "continuous_covariate_keys": args.continuous_covariate_keys,
        },
        "preset": args.preset,
        "model": model_kwargs,
        "train": {**train_kwargs, **trainer_kwargs, "accelerator": args.accelerator, "devices": args.devices},
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "n_train_donors": len(model.train_indices),
        "n_validation_donors": len(model.validation_indices),
    }
    (out / CLI_RECORD).write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(
        f"trained on {len(model.train_indices)} donors ({len(model.validation_indices)} validation) "
        f"in {seconds:.1f} s; model saved to {out}"
    )
    return 0


# -- hyfa impute ---------------------------------------------------------------------------------

IMPUTE_HELP = """Impute tissues with a trained model and write them to an .h5mu file (one modality per target).

Streams the output minibatch by minibatch (hyfa.HYFA.write_imputed_expression): memory holds the
data, the model and one minibatch. --missing-only writes exactly what completes the cohort: every
donor x tissue pair a donor did not give, each predicted from all of the donor's own tissues.

Splitting a whole cohort across jobs: run the same command with --chunk 1/N ... N/N (e.g. a SLURM
array, --chunk ${SLURM_ARRAY_TASK_ID}/N with --array=1-N), each to its own output file; chunk I takes
the I-th of N contiguous, near-equal slices of the donors (of --donors-file, else of the MuData,
in its order). Then join the parts with `hyfa merge`.
"""


def _impute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.pt").is_file():
        parser.error(f"model directory {args.model_dir!r} holds no model.pt (train one with `hyfa train`)")
    data = _existing_file(parser, args.data, "input MuData")
    out = _output(parser, args.output, args.overwrite)
    chunk = _parse_chunk(parser, args.chunk)
    donors = _read_names(parser, args.donors_file, "--donors-file")
    library_size = args.library_size
    if library_size not in ("latent", "observed"):
        try:
            library_size = float(library_size)
        except ValueError:
            parser.error(f"--library-size must be latent, observed or a number; got {args.library_size!r}")

    from hyfa import HYFA

    _quiet_scvi()
    mdata = _read_mudata(data)
    model = HYFA.load(str(model_dir), adata=mdata, accelerator=args.accelerator)
    if chunk is not None:
        donors = donor_chunk(list(mdata.obs_names) if donors is None else donors, *chunk)
        if not donors:
            print(f"chunk {args.chunk}: no donors; nothing written")
            return 0
    model.write_imputed_expression(
        out,
        target_tissues=args.targets,
        source_tissues=args.sources,
        donors=donors,
        batch_size=args.batch_size,
        library_size=library_size,
        missing_only=args.missing_only,
        overwrite=args.overwrite,
        progress_bar=not args.no_progress_bar,
    )
    what = "missing donor x tissue pairs" if args.missing_only else "imputed tissues"
    n = "all" if donors is None else len(donors)
    print(f"{what} of {n} donors written to {out}")
    return 0


# -- hyfa merge ----------------------------------------------------------------------------------

MERGE_HELP = """Join the .h5mu files of `hyfa impute --chunk I/N` jobs into one .h5mu file.

Each tissue's rows (donors) are concatenated in the order the parts are given; a tissue missing
from a part (no donor of the chunk needed it) is simply absent there. Donors must not repeat
across parts. Equivalent Python: for each tissue, anndata.concat of the parts' modalities, then
mudata.MuData of the results.
"""


def merge_imputed(parts: list[Path], output: Path) -> None:
    """Write the per-tissue concatenation of the ``.h5mu`` files ``parts`` to ``output``."""
    import anndata as ad
    import mudata

    from hyfa._mudata import quiet_mudata

    tissues: dict[str, list] = {}
    uns = {}
    with quiet_mudata():
        for part in parts:
            mdata = mudata.read_h5mu(part)
            uns = uns or dict(mdata.uns)
            for tissue, adata in mdata.mod.items():
                tissues.setdefault(tissue, []).append(adata)
        merged = {}
        for tissue, adatas in tissues.items():
            joined = ad.concat(adatas, join="outer", merge="same", uns_merge="first")
            if not joined.obs_names.is_unique:
                raise CLIError(
                    f"Donors repeat across parts in tissue {tissue!r}; merge parts of disjoint chunks."
                )
            merged[tissue] = joined
        result = mudata.MuData(merged)
        result.uns.update(uns)
        result.write_h5mu(output)


def _merge(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    parts = [_existing_file(parser, p, "part") for p in args.parts]
    out = _output(parser, args.output, args.overwrite)
    merge_imputed(parts, out)
    print(f"{len(parts)} parts merged into {out}")
    return 0


# -- hyfa evaluate -------------------------------------------------------------------------------

EVALUATE_HELP = """Score a trained model on held-out donors with the paper's protocol (hyfa.tl.evaluate_imputation).

For each source setting, every target tissue with at least --min-donors evaluation donors having
the sources and the target is predicted from the sources alone and compared with the measured
expression: per-sample and per-gene Pearson r, for HYFA and the baselines (mean, whole-blood
surrogate, kNN, TEEBoT, fitted on the model's training donors).

Writes PREFIX.csv (every score, the tidy table of evaluate_imputation), PREFIX_summary.csv
(hyfa.tl.summarize_evaluation: mean, median and the Mann-Whitney p-value against HYFA per
setting, target and method) and PREFIX.png (hyfa.pl.imputation_comparison of the first setting).

Sources: `paper` (GTEx tissue names: whole blood, the four accessible tissues, all collected
tissues), `all` (each donor's other collected tissues; the model alone unless --baselines
none), or tissue names (one setting with those sources).
"""


def _evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    model_dir = Path(args.model_dir)
    if not (model_dir / "model.pt").is_file():
        parser.error(f"model directory {args.model_dir!r} holds no model.pt (train one with `hyfa train`)")
    data = _existing_file(parser, args.data, "input MuData")
    prefix = Path(args.prefix)
    outputs = [prefix.with_name(prefix.name + s) for s in (".csv", "_summary.csv", ".png")]
    for path in outputs:
        _output(parser, str(path), args.overwrite)
    donors = _read_names(parser, args.donors_file, "--donors-file")

    import matplotlib

    matplotlib.use("Agg")
    from hyfa import HYFA, pl, tl

    _quiet_scvi()
    mdata = _read_mudata(data)
    model = HYFA.load(str(model_dir), adata=mdata, accelerator=args.accelerator)
    if args.sources == ["paper"]:
        sources = "paper"
    elif args.sources == ["all"]:
        sources = None
    else:
        sources = list(args.sources)
    baselines = None if args.baselines == "none" else "default"
    results = tl.evaluate_imputation(
        model,
        mdata,
        donors=donors,
        sources=sources,
        target_tissues=args.targets,
        baselines=baselines,
        layer=args.layer,
        min_donors=args.min_donors,
        covariate_keys=args.covariate_keys,
    )
    if results.empty:
        raise CLIError(
            f"No target tissue has {args.min_donors} evaluation donors with the sources; lower --min-donors."
        )
    summary = tl.summarize_evaluation(results)
    results.to_csv(outputs[0], index=False)
    summary.to_csv(outputs[1], index=False)
    first = results["sources"].iloc[0]
    pl.imputation_comparison(results, metric=args.metric, sources=first, show=False, save=outputs[2])
    hyfa_rows = summary[summary["method"] == "HYFA"]
    for (setting, metric), group in hyfa_rows.groupby(["sources", "metric"], sort=False):
        print(
            f"HYFA, sources {setting}, {metric} r: mean over {len(group)} targets {group['mean'].mean():.3f}"
        )
    print("written: " + ", ".join(str(p) for p in outputs))
    return 0


# -- parser --------------------------------------------------------------------------------------
