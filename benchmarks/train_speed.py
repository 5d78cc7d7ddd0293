"""Training speed and memory of HYFA with the paper's hyperparameters, next to this machine's GEMM rate.

Two cohorts, each trained in a child process (so that peak memory is its own):

- ``gtex``: the bundled GTEx v8 ACMG-59 data (834 donors, 49 tissues, 15,197 samples, 59 genes),
  normalized with ``hyfa.pp.normalize_gtex``, trained on the paper's 500 training donors;
- ``simulated``: a GTEx-shaped cohort from ``hyfa.data.simulate`` (834 donors, 49 tissues, about 18
  tissues per donor, ``--n-genes`` genes), with 500 random training donors.

Every dimension is set explicitly to the paper's value (Viñas et al. 2023), whatever the package
defaults, with 63 donors per batch. Reported per cohort: seconds per training epoch (validation
excluded; the mean over epochs after the first), training samples (donor x tissue) per second, the
part of the epoch spent outside the training steps (data loading, Lightning), peak resident memory,
and FLOP rates: the model's (an analytic count of its matrix products, forward and backward, from
the numbers of source and target samples actually drawn) and those of its encoder and decoder (timed
alone at the training shapes), each as a fraction of what ``torch.matmul`` reaches here, measured in
the same process at the encoder, decoder and message-MLP shapes. On shared machines the GEMM rate
moves with the load, so compare runs by their fraction of it, or interleave them; there, one torch
thread (``--threads 1``) can also be faster than several, which wait for each other.

``--precision bf16`` trains with ``model.train(precision="bf16-mixed")`` (Lightning's bfloat16
autocast), worthwhile on CPUs with AVX512-BF16 or AMX. ``--reuse-freed-memory`` keeps freed memory in
the process (glibc's ``mallopt``) rather than mapping fresh pages for every large tensor.

Examples
--------
    python benchmarks/train_speed.py                      # both cohorts, 2 epochs, fp32
    python benchmarks/train_speed.py --precision bf16     # bfloat16 autocast
    python benchmarks/train_speed.py --cohort gtex --epochs 5 --threads 1
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

#: The paper's hyperparameters (Viñas et al. 2023), set explicitly.
PAPER_HYPERPARAMETERS = {
    "n_metagenes": 50,
    "n_factors": 98,
    "n_donor_latent": 71,
    "n_tissue_latent": 120,
    "n_metagene_latent": 48,
    "n_heads": 28,
    "n_head_dim": 28,
    "n_graph_layers": 2,
    "n_predictor_layers": 2,
    "n_hidden_decoder": 256,
    "dropout_rate": 0.174,
    # the paper's pseudo-masks (k ~ Uniform{1..n-1} sources): the package default (3) draws fewer sources,
    # hence fewer hyperedges per batch, which would flatter the comparison with the reference
    "source_count_exponent": 1.0,
}
BATCH_SIZE = 63
N_TRAIN_DONORS = 500
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}
COHORTS = ("gtex", "simulated")
RESULT_PREFIX = "RESULT "


def parse_args(argv=None) -> argparse.Namespace:
    """Return the command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cohort", choices=[*COHORTS, "both"], default="both", help="which cohort(s) to train"
    )
    parser.add_argument(
        "--epochs", type=int, default=2, help="training epochs per cohort (the first is warm-up)"
    )
    parser.add_argument("--n-genes", type=int, default=2000, help="genes of the simulated cohort")
    parser.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="training precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--reuse-freed-memory",
        action="store_true",
        help="keep freed memory in the process (glibc) instead of returning it to the system",
    )
    parser.add_argument("--seed", type=int, default=0, help="scvi-tools seed")
    parser.add_argument("--child", choices=COHORTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- process settings ---------------------------------------------------------------------------
def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory, so that large tensors reuse pages instead of faulting in new ones.

    Each large tensor is otherwise a fresh ``mmap``: its pages are faulted in and zeroed on
    first use, which in virtual machines can cost more than the arithmetic done on them.
    Returns whether the setting was applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    )


def reset_peak_memory() -> bool:
    """Reset the kernel's peak resident set size of this process (Linux); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_gb(field: str) -> float | None:
    """Return a memory field of ``/proc/self/status`` (e.g. ``"VmRSS"``) in GB, or ``None``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def peak_memory_gb() -> float:
    """Return this process's peak resident set size since the last reset, in GB (else its lifetime peak)."""
    peak = _status_gb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def current_memory_gb() -> float:
    """Return this process's resident set size in GB (``nan`` where unknown)."""
    current = _status_gb("VmRSS")
    return float("nan") if current is None else current


# -- cohorts ------------------------------------------------------------------------------------
def gtex_cohort():
    """Return the normalized GTEx ACMG-59 MuData with the paper's split in ``obs["split"]``."""
    import hyfa

    mdata = hyfa.data.gtex_acmg59()
    hyfa.pp.normalize_gtex(mdata)
    hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    return mdata


def simulated_cohort(n_genes: int, seed: int):
    """Return a GTEx-shaped simulated MuData with a 500 / 167 / 167 donor split in ``obs["split"]``."""
    import numpy as np

    import hyfa

    mdata, _ = hyfa.data.simulate(
        n_donors=834, n_tissues=49, n_genes=n_genes, missing_rate=1 - 18 / 49, seed=seed
    )
    split = np.array(
        ["train"] * N_TRAIN_DONORS + ["val"] * 167 + ["test"] * (mdata.n_obs - N_TRAIN_DONORS - 167)
    )
    mdata.obs["split"] = np.random.default_rng(seed).permutation(split)
    hyfa.HYFA.setup_mudata(mdata)
    return mdata


# -- timing -------------------------------------------------------------------------------------
def epoch_timer():
    """Return a Lightning callback timing training epochs without validation, and their training steps."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.epochs, self.steps = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self._start, self._validation, self._step_total = time.perf_counter(), 0.0, 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._step_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._step_total += time.perf_counter() - self._step_start

        def on_validation_epoch_start(self, trainer, pl_module):
            self._validation_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            self._validation += time.perf_counter() - self._validation_start

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs.append(time.perf_counter() - self._start - self._validation)
            self.steps.append(self._step_total)

    return EpochTimer()


def record_sample_counts(module) -> list[tuple[int, int, int]]:
    """Record ``(donors, source samples, target samples)`` of every training minibatch ``module`` sees."""
    counts = []
    get_inference_input = module._get_inference_input

    def recording(tensors):
        inputs = get_inference_input(tensors)
        if module.training:
            source, target = inputs["source_mask"], inputs["target_mask"]
            counts.append((source.shape[0], int(source.sum()), int(target.sum())))
        return inputs

    module._get_inference_input = recording
    return counts


def median_time(function, repeats: int = 5) -> float:
    """Return the median wall time of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def gemm_rate(m: int, k: int, n: int, dtype) -> float:
    """Return the GFLOP/s of ``torch.matmul`` of ``(m, k) @ (k, n)`` matrices of ``dtype``."""
    import torch

    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    return 2 * m * k * n / median_time(lambda: torch.matmul(a, b)) / 1e9


# -- FLOPs --------------------------------------------------------------------------------------
def forward_flops(
    hp: dict, n_genes: int, n_tissues: int, n_donors: int, n_sources: int, n_targets: int
) -> dict:
    """Return the forward FLOPs of the matrix products of one minibatch, by part of the model."""
    n_meta, n_fac = hp["n_metagenes"], hp["n_factors"]
    n_msg = hp["n_heads"] * hp["n_head_dim"]
    n_d, n_t, n_m = hp["n_donor_latent"], hp["n_tissue_latent"], hp["n_metagene_latent"]
    n_pair, n_in = n_t + n_m, n_d + n_t + n_m
    graph_layer = (
        2 * n_sources * n_meta * n_fac * n_msg  # hyperedge attributes -> phi_e's hidden units
        + 2 * n_sources * n_meta * hp["n_heads"] * n_msg  # attention-weighted sums
        + 2 * n_donors * n_msg * n_msg  # phi_e's output layer, after the sums
        + 2 * n_msg * (n_donors * n_d + n_tissues * n_t + n_meta * n_m)  # per-node parts of phi_e
        + 2 * n_tissues * n_meta * (n_pair * n_pair + n_pair * hp["n_heads"])  # attention logits
        + 2 * n_donors * ((n_d + n_msg) * n_d + n_d * n_d)  # phi_h
    )
    rows = n_targets * n_meta
    return {
        "encoder": 2 * n_sources * n_genes * n_meta * n_fac,
        "graph": hp["n_graph_layers"] * graph_layer,
        "predictor": 2 * rows * n_in * (n_in * (hp["n_predictor_layers"] - 1) + n_fac)
        + 2 * n_in * (n_targets * (n_d + n_t) + n_meta * n_m),
        "decoder": 2
        * n_targets
        * (n_meta * n_fac * hp["n_hidden_decoder"] + 2 * hp["n_hidden_decoder"] * n_genes),
    }


def training_flops(forward: dict) -> float:
    """Return forward + backward FLOPs: backward is twice the forward, once for the encoder (no input gradient)."""
    return sum(3 * flops for part, flops in forward.items() if part != "encoder") + 2 * forward["encoder"]


# -- one cohort ---------------------------------------------------------------------------------
def part_rates(module, hp: dict, n_genes: int, n_sources: int, n_targets: int, precision: str) -> dict:
    """Return the GFLOP/s of the encoder and decoder, forward and backward, alone at the training shapes."""
    import torch

    module.train()
    x = torch.randn(n_sources, n_genes)
    attributes = torch.randn(n_targets, hp["n_metagenes"], hp["n_factors"], requires_grad=True)
    observed = torch.randn(n_targets, n_genes)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def encoder_step():
        with autocast:
            out = module.encoder(x)
        out.float().sum().backward()

    def decoder_step():
        with autocast:
            px = module.decoder(attributes)
        (-px.log_prob(observed).mean()).backward()

    flops = forward_flops(hp, n_genes, module.n_tissues, BATCH_SIZE, n_sources, n_targets)
    return {
        "encoder": 2 * flops["encoder"] / median_time(encoder_step) / 1e9,
        "decoder": 3 * flops["decoder"] / median_time(decoder_step) / 1e9,
    }


def matmul_rates(hp: dict, n_genes: int, n_sources: int, n_targets: int, dtype) -> dict:
    """Return ``torch.matmul`` GFLOP/s at the encoder, decoder and message-MLP shapes."""
    n_attr = hp["n_metagenes"] * hp["n_factors"]
    n_msg = hp["n_heads"] * hp["n_head_dim"]
    return {
        "encoder": gemm_rate(n_sources, n_genes, n_attr, dtype),
        "decoder": gemm_rate(n_targets, n_attr, hp["n_hidden_decoder"], dtype),
        "message": gemm_rate(n_sources * hp["n_metagenes"], hp["n_factors"], n_msg, dtype),
    }


def run_cohort(cohort: str, args: argparse.Namespace) -> dict:
    """Train one cohort and return its measurements."""
    warnings.filterwarnings("ignore")
    import numpy as np
    import scvi
    import torch

    import hyfa

    scvi.settings.verbosity = logging.WARNING
    logging.getLogger("lightning").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    reused = reuse_freed_memory() if args.reuse_freed_memory else False
    scvi.settings.seed = args.seed
    mdata = gtex_cohort() if cohort == "gtex" else simulated_cohort(args.n_genes, args.seed)
    reset_peak_memory()
    before_training = current_memory_gb()
    model = hyfa.HYFA(mdata, **PAPER_HYPERPARAMETERS)
    counts = record_sample_counts(model.module)
    timer = epoch_timer()
    model.train(
        max_epochs=args.epochs,
        split_key="split",
        batch_size=BATCH_SIZE,
        precision=PRECISIONS[args.precision],
        enable_progress_bar=False,
        callbacks=[timer],
    )
    peak = peak_memory_gb()
    n_genes, n_tissues = model.module.n_genes, model.module.n_tissues
    first = 1 if len(timer.epochs) > 1 else 0  # the first epoch warms up
    epoch_s = float(np.mean(timer.epochs[first:]))
    outside_s = epoch_s - float(np.mean(timer.steps[first:]))
    n_batches = len(counts) // len(timer.epochs)
    epoch_counts = np.array(counts[:n_batches])
    samples = int(epoch_counts[:, 1:].sum())
    batch_flops = [
        training_flops(forward_flops(PAPER_HYPERPARAMETERS, n_genes, n_tissues, *batch))
        for batch in counts[first * n_batches :]
    ]
    flops = sum(batch_flops) / len(timer.epochs[first:])
    mean_sources, mean_targets = (int(v) for v in epoch_counts[:, 1:].mean(axis=0))
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    rates = {
        name: matmul_rates(PAPER_HYPERPARAMETERS, n_genes, mean_sources, mean_targets, d)
        for name, d in dtypes.items()
    }
    parts = part_rates(
        model.module, PAPER_HYPERPARAMETERS, n_genes, mean_sources, mean_targets, args.precision
    )
    return {
        "cohort": cohort,
        "genes": n_genes,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "reuse_freed_memory": reused,
        "epochs": args.epochs,
        "batches_per_epoch": n_batches,
        "samples_per_epoch": samples,
        "s_per_epoch": epoch_s,
        "outside_steps_s": outside_s,
        "samples_per_s": samples / epoch_s,
        "peak_rss_gb": peak,
        "rss_before_training_gb": before_training,
        "model_gflops_per_s": flops / epoch_s / 1e9,
        "matmul_gflops_per_s": rates,
        "part_gflops_per_s": parts,
        "mean_sources_per_batch": mean_sources,
        "mean_targets_per_batch": mean_targets,
    }


# -- report -------------------------------------------------------------------------------------
def run_child(cohort: str, argv: list[str]) -> dict:
    """Run one cohort in a child process and return its result."""
    command = [sys.executable, __file__, *argv, "--child", cohort]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"The {cohort} run failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


def print_table(results: list[dict]) -> None:
    """Print the measurements of each cohort."""
    compute = results[0]["precision"]
    header = (
        f"{'cohort':10} {'genes':>6} {'prec':>5} {'thr':>4} {'s/epoch':>8} {'outside':>8} {'samples/s':>10} "
        f"{'peak GB':>8} {'+train':>7} {'model GF/s':>11} {'% msg GEMM':>10} {'enc %':>6} {'dec %':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = r["matmul_gflops_per_s"][compute]
        print(
            f"{r['cohort']:10} {r['genes']:>6} {r['precision']:>5} {r['threads']:>4} {r['s_per_epoch']:>8.2f} "
            f"{r['outside_steps_s']:>8.2f} {r['samples_per_s']:>10.0f} {r['peak_rss_gb']:>8.2f} "
            f"{r['peak_rss_gb'] - r['rss_before_training_gb']:>7.2f} "
            f"{r['model_gflops_per_s']:>11.1f} {100 * r['model_gflops_per_s'] / rate['message']:>9.0f}% "
            f"{100 * r['part_gflops_per_s']['encoder'] / rate['encoder']:>5.0f}% "
            f"{100 * r['part_gflops_per_s']['decoder'] / rate['decoder']:>5.0f}%"
        )
    print("\ntorch.matmul GFLOP/s measured in each run (encoder / decoder / message-MLP shapes):")
    for r in results:
        for dtype, rates in r["matmul_gflops_per_s"].items():
            shapes = " / ".join(f"{rates[k]:.0f}" for k in ("encoder", "decoder", "message"))
            print(f"  {r['cohort']:10} {dtype}: {shapes}")
        parts = r["part_gflops_per_s"]
        print(
            f"  {r['cohort']:10} encoder / decoder reach {parts['encoder']:.0f} / {parts['decoder']:.0f} GFLOP/s"
        )
    print(
        "\ns/epoch: training epoch without validation (mean after the first); outside: part of it spent "
        "outside the training steps (data loading, Lightning); peak GB: peak resident memory while training "
        "(data included), +train: its rise over the memory held before; % msg GEMM: the model's FLOP rate as a "
        "fraction of torch.matmul at the message-MLP shape; enc % / dec %: the encoder's and decoder's "
        "rates alone (forward + backward) as fractions of torch.matmul at their shapes."
    )


def main(argv=None) -> None:
    """Run the benchmark."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        print(RESULT_PREFIX + json.dumps(run_cohort(args.child, args)), flush=True)
        return
    cohorts = COHORTS if args.cohort == "both" else (args.cohort,)
    results = []
    for cohort in cohorts:
        start = time.perf_counter()
        results.append(run_child(cohort, argv))
        print(f"[{cohort}: {time.perf_counter() - start:.0f} s]", flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
