"""HYFA at whole-transcriptome scale: wall time and peak memory of every phase, in one process.

The cohort has GTEx v8's shape as in the paper: the bundled data's real donor x tissue pattern
(834 donors, 49 tissues, 15,197 samples, 2-39 tissues per donor) with ``--genes`` genes (default
12,557) of random normalized float32 values, the paper's hyperparameters with
``source_count_exponent=1``, the paper's 500 training donors and 63 donors per batch. Phases:

- ``build``: the MuData (not HYFA's cost; the baseline of the next phase);
- ``setup``: ``HYFA.setup_mudata``; ``construct``: ``HYFA(mdata, ...)``;
- ``train fp32`` / ``train bf16``: a fresh model trained for two epochs, fp32 and
  ``precision="bf16-mixed"``, measured by ``train_speed.py``'s ``train_once``: seconds per epoch
  (the second; validation excluded), the fp32 / bf16 ``torch.matmul`` rates measured in the same
  run at the encoder and decoder shapes, and the GEMM floor (the encoder's forward and
  weight-gradient products and the decoder's forward and backward products at those rates) as a
  fraction of the epoch;
- ``impute 1 target``: ``get_imputed_expression(target_tissues="Lung")`` for all 834 donors;
- ``complete cohort``: ``write_imputed_expression(missing_only=True)``, every missing donor x
  tissue pair from all of the donor's tissues, streamed to an ``.h5mu`` file;
- ``impute all, leave-one-out``: ``write_imputed_expression()``, all 49 targets for every donor
  with ``exclude_target=True`` (the observed ones leave-one-out), streamed to disk;
- ``save`` / ``load``: ``model.save`` and ``HYFA.load`` onto the registered cohort.

Each phase prints its wall time, the peak resident memory during the phase (Linux ``VmHWM``,
reset before each phase) and that peak above the memory held before it. The imputation phases
are also given in training epochs (fp32). ``--threads`` sets torch's threads.

Examples
--------
    python benchmarks/scale.py                     # 12,557 genes
    python benchmarks/scale.py --genes 2000 --skip-train
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import current_memory_gb, peak_memory_gb, reset_peak_memory
from train_speed import PAPER_HYPERPARAMETERS, gtex_scale_cohort


def parse_args(argv=None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=12_557, help="genes per tissue")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-train", action="store_true", help="skip the training phases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the values and of scvi-tools")
    return parser.parse_args(argv)


class Phases:
    """Times phases and records their peak memory."""

    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, function, *args, **kwargs):
        """Run ``function`` as phase ``name`` and return its result."""
        before = current_memory_gb()
        reset_peak_memory()
        start = time.perf_counter()
        result = function(*args, **kwargs)
        wall = time.perf_counter() - start
        peak = peak_memory_gb()
        self.rows.append({"phase": name, "wall_s": wall, "peak_gb": peak, "above_gb": peak - before})
        print(f"  {name}: {wall:.1f} s, peak {peak:.2f} GB ({peak - before:+.2f} GB)", flush=True)
        return result

    def print_table(self, epoch_s: float | None, data_gb: float) -> None:
        """Print the phases as a markdown table."""
        print(f"\nexpression data: {data_gb:.2f} GB (float32)")
        print("| phase | wall (s) | in fp32 epochs | peak RSS (GB) | peak above start of phase (GB) |")
        print("| --- | --- | --- | --- | --- |")
        for row in self.rows:
            epochs = f"{row['wall_s'] / epoch_s:.1f}" if epoch_s else ""
            print(
                f"| {row['phase']} | {row['wall_s']:.1f} | {epochs} | {row['peak_gb']:.2f} | "
                f"{row['above_gb']:+.2f} |"
            )


def training_phase(mdata, precision: str, seed: int) -> dict:
    """Train a fresh model for two epochs at ``precision`` with train_speed's measurements (GEMM floor, matmul rates)."""
    from train_speed import train_once

    return train_once(
        mdata, "gtex-scale", precision, argparse.Namespace(epochs=2, seed=seed, reuse_freed_memory=False)
    )


def print_training(result: dict) -> None:
    """Print a training phase's epoch time, GEMM floor and matmul rates."""
    precision = result["precision"]
    floor = result["gemm_floor"][precision]["floor_s"]
    rates = result["matmul_gflops_per_s"][precision]
    print(
        f"    {precision}: {result['s_per_epoch']:.1f} s/epoch (fastest {result['best_s_per_epoch']:.1f} s); GEMM floor "
        f"{floor:.1f} s = {floor / result['s_per_epoch']:.2f} of the epoch ({floor / result['best_s_per_epoch']:.2f} of "
        f"the fastest); matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items()),
        flush=True,
    )


def main(argv=None) -> None:
    """Run every phase and print the table."""
    args = parse_args(argv)
    import scvi
    import torch

    import hyfa

    if args.threads:
        torch.set_num_threads(args.threads)
    scvi.settings.verbosity = logging.WARNING
    logging.getLogger("lightning").setLevel(logging.ERROR)
    scvi.settings.seed = args.seed
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.genes} genes", flush=True)
    phases = Phases()
    mdata = phases.run("build", gtex_scale_cohort, args.genes, args.seed, register=False)
    data_gb = sum(a.X.nbytes for a in mdata.mod.values()) / 1e9
    phases.run("setup", hyfa.HYFA.setup_mudata, mdata)
    hp = {**PAPER_HYPERPARAMETERS, "source_count_exponent": 1.0}
    epoch = bf16 = None
    if not args.skip_train:
        fp32 = phases.run("train fp32 (2 epochs)", training_phase, mdata, "fp32", args.seed)
        print_training(fp32)
        low = phases.run("train bf16 (2 epochs)", training_phase, mdata, "bf16", args.seed)
        print_training(low)
        epoch, bf16 = fp32["s_per_epoch"], low["s_per_epoch"]
        print(
            f"    bf16-mixed: {epoch / bf16:.2f}x fp32 ({fp32['best_s_per_epoch'] / low['best_s_per_epoch']:.2f}x on the fastest epochs)"
        )
    model = phases.run("construct", hyfa.HYFA, mdata, **hp)
    with tempfile.TemporaryDirectory() as tmp:
        phases.run("impute 1 target (Lung)", model.get_imputed_expression, target_tissues="Lung")
        phases.run(
            "complete cohort (write)",
            model.write_imputed_expression,
            Path(tmp) / "completed.h5mu",
            missing_only=True,
            progress_bar=False,
        )
        phases.run(
            "impute all, leave-one-out (write)",
            model.write_imputed_expression,
            Path(tmp) / "all.h5mu",
            progress_bar=False,
        )
        size = sum(f.stat().st_size for f in Path(tmp).glob("*.h5mu")) / 1e9
        print(f"    files written: {size:.2f} GB", flush=True)
        phases.run("save", model.save, Path(tmp) / "model", overwrite=True)
        phases.run("load", hyfa.HYFA.load, Path(tmp) / "model", mdata)
    phases.print_table(epoch, data_gb)


if __name__ == "__main__":
    main()
