"""The ``hyfa`` command line."""

from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import logging

    import scvi

    from . import _demo

    scvi.settings.verbosity = logging.WARNING
    start = time.perf_counter()
    table, timings, _ = _demo.run_demo(preset=args.preset, max_epochs=args.max_epochs, seed=args.seed)
    print(_demo.format_table(table))
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

Presets:
  quick  n_metagenes=10, n_factors=32, n_heads=8, n_head_dim=16, n_donor_latent=64,
         n_tissue_latent=32, n_metagene_latent=16, n_hidden_decoder=128, 2 graph layers,
         dropout 0.174, no normalization layers, source_count_exponent=3 (the default);
         Adam lr 2e-3, 63 donors per batch, 200 epochs (about 1.5 minutes on 2 CPU cores).
  paper  the paper's tuned configuration (50 metagenes x 98, 28 heads x 28, lr 4.56e-4,
         200 epochs, uniform number of source tissues: source_count_exponent=1); slow on a CPU.
"""


def main(argv: list[str] | None = None) -> int:
    """Run the ``hyfa`` command line."""
    parser = argparse.ArgumentParser(
        prog="hyfa", description="HYFA: multi-tissue gene expression imputation."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="train and evaluate on the bundled GTEx data",
        description=DEMO_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--preset", default="quick", choices=["quick", "paper"], help="hyperparameter preset")
    demo.add_argument("--max-epochs", type=int, default=None, help="override the preset's epochs")
    demo.add_argument("--seed", type=int, default=0, help="random seed (scvi.settings.seed)")
    demo.add_argument("--output", default=None, help="also write the table to this CSV file")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
