"""The argument parser of the ``hyfa`` command line (every command's options and help)."""

from __future__ import annotations

import argparse

from ._commands import DEMO_HELP, EVALUATE_HELP, IMPUTE_HELP, MERGE_HELP, TRAIN_HELP
from ._common import EXIT_STATUS


def build_parser() -> argparse.ArgumentParser:
    """Return the ``hyfa`` argument parser (one subparser per command)."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hyfa",
        description="HYFA: multi-tissue gene expression imputation. `hyfa COMMAND --help` documents a command.",
        epilog=EXIT_STATUS,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        """Add subcommand ``name``: its one-line summary, its --help text and the exit-status epilog."""
        return sub.add_parser(
            name, help=summary, description=description, epilog=EXIT_STATUS, formatter_class=raw
        )

    demo = command("demo", "train and evaluate on the bundled GTEx data", DEMO_HELP)
    demo.add_argument("--preset", default="quick", choices=["quick", "paper"], help="hyperparameter preset")
    demo.add_argument("--max-epochs", type=int, default=None, help="override the preset's epochs")
    demo.add_argument("--seed", type=int, default=0, help="random seed (scvi.settings.seed)")
    demo.add_argument("--output", default=None, help="also write the table to this CSV file")

    # train
    train = command("train", "train HYFA on a MuData file", TRAIN_HELP)
    train.add_argument("data", help="input MuData (.h5mu): one modality per tissue, donors as obs")
    train.add_argument("model_dir", help="output model directory")
    g = train.add_argument_group("data (hyfa.HYFA.setup_mudata)")
    g.add_argument("--layer", default=None, help="layer holding the expression (default: .X)")
    g.add_argument(
        "--tissues", nargs="+", metavar="TISSUE", default=None, help="modalities to model (default: all)"
    )
    g.add_argument(
        "--gene-mask-key", default=None, help="boolean var column selecting the genes (e.g. common)"
    )
    g.add_argument(
        "--categorical-covariate-keys",
        nargs="+",
        metavar="COLUMN",
        default=None,
        help="mdata.obs columns (e.g. sex)",
    )
    g.add_argument(
        "--continuous-covariate-keys",
        nargs="+",
        metavar="COLUMN",
        default=None,
        help="mdata.obs columns (e.g. age)",
    )
    g = train.add_argument_group("donor split")
    g.add_argument(
        "--split-key", default=None, help='mdata.obs column: "train", "val"/"validation", other = test'
    )
    g.add_argument(
        "--train-donors", metavar="FILE", default=None, help="file of training donor names, one a line"
    )
    g.add_argument("--validation-donors", metavar="FILE", default=None, help="file of validation donor names")
    g = train.add_argument_group("hyperparameters")
    g.add_argument(
        "--preset",
        choices=["quick", "paper"],
        default=None,
        help="named preset (default: hyfa.HYFA's defaults)",
    )
    g.add_argument(
        "--model-param",
        action="append",
        metavar="NAME=VALUE",
        help="a hyfa.HYFA argument, e.g. n_metagenes=20 or norm=layer (repeatable; overrides the preset)",
    )
    g.add_argument("--max-epochs", type=int, default=None, help="epochs (preset's, else 200)")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (preset's, else 4.56e-4)")
    g.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="donors per minibatch (default: 63, fewer below 315 training donors)",
    )
    g.add_argument(
        "--early-stopping", action="store_true", help="stop when the validation loss stops improving"
    )
    g = train.add_argument_group("hardware (Lightning)")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto (default)")
    g.add_argument(
        "--devices", default="auto", help="number of devices, comma-separated ids, or auto (default)"
    )
    g.add_argument(
        "--strategy",
        default=None,
        help="e.g. ddp (several devices or nodes; see the docs' GPUs and clusters page)",
    )
    g.add_argument("--num-nodes", type=int, default=1, help="machines (multi-node DDP, e.g. under SLURM)")
    g.add_argument("--precision", default=None, help="e.g. 32-true (default), bf16-mixed, 16-mixed")
    train.add_argument("--seed", type=int, default=0, help="random seed (scvi.settings.seed; default 0)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bar (e.g. in batch logs)")

    # impute
    impute = command("impute", "impute tissues into an .h5mu file", IMPUTE_HELP)
    impute.add_argument("model_dir", help="model directory written by `hyfa train` (or hyfa.HYFA.save)")
    impute.add_argument(
        "data", help="MuData (.h5mu) with the donors' source tissues, set up like the training data"
    )
    impute.add_argument("output", help="output .h5mu file, one modality per target tissue")
    impute.add_argument(
        "--missing-only", action="store_true", help="only the donor x tissue pairs not measured"
    )
    impute.add_argument(
        "--targets", nargs="+", metavar="TISSUE", default=None, help="target tissues (default: all)"
    )
    impute.add_argument(
        "--sources",
        nargs="+",
        metavar="TISSUE",
        default=None,
        help="source tissues (default: each donor's own)",
    )
    impute.add_argument(
        "--donors-file", metavar="FILE", default=None, help="donor names, one a line (default: all)"
    )
    impute.add_argument(
        "--chunk", metavar="I/N", default=None, help="only the I-th of N donor chunks (1 <= I <= N)"
    )
    impute.add_argument("--batch-size", type=int, default=None, help="donors per minibatch")
    impute.add_argument(
        "--library-size", default="latent", help="counts models: latent (default), observed, or a number"
    )
    impute.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    impute.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    impute.add_argument("--no-progress-bar", action="store_true", help="no progress bar")

    # merge
    merge = command("merge", "join the outputs of `hyfa impute --chunk` jobs", MERGE_HELP)
    merge.add_argument("output", help="merged .h5mu file")
    merge.add_argument("parts", nargs="+", help=".h5mu files written by `hyfa impute --chunk I/N`")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    # evaluate
    evaluate = command("evaluate", "score held-out donors: CSV tables and a figure", EVALUATE_HELP)
    evaluate.add_argument("model_dir", help="model directory written by `hyfa train`")
    evaluate.add_argument("data", help="MuData (.h5mu) with the evaluation donors' measured tissues")
    evaluate.add_argument("prefix", help="output prefix: writes PREFIX.csv, PREFIX_summary.csv, PREFIX.png")
    evaluate.add_argument(
        "--donors-file",
        metavar="FILE",
        default=None,
        help="evaluation donors (default: the model's test donors)",
    )
    evaluate.add_argument(
        "--sources",
        nargs="+",
        default=["paper"],
        metavar="SOURCES",
        help="paper (default), all, or tissue names",
    )
    evaluate.add_argument(
        "--targets", nargs="+", metavar="TISSUE", default=None, help="candidate target tissues"
    )
    evaluate.add_argument(
        "--baselines",
        choices=["default", "none"],
        default="default",
        help="compare with the paper's baselines",
    )
    evaluate.add_argument(
        "--layer", default=None, help="layer of the measured expression (default: the model's)"
    )
    evaluate.add_argument(
        "--covariate-keys", nargs="+", metavar="COLUMN", default=None, help="for kNN and TEEBoT"
    )
    evaluate.add_argument("--min-donors", type=int, default=25, help="donors a target needs (default 25)")
    evaluate.add_argument(
        "--metric", choices=["per-gene", "per-sample"], default="per-gene", help="metric of the figure"
    )
    evaluate.add_argument("--accelerator", default="auto", help="cpu, gpu or auto (default)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"hyfa {version('hyfa')}"
    except PackageNotFoundError:  # pragma: no cover
        return "hyfa (not installed)"
