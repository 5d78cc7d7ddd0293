"""Training speed and memory of HYFA with the paper's hyperparameters, next to this machine's GEMM rate.

Three cohorts, each built and trained in a child process (so that peak memory is its own):

- ``gtex``: the bundled GTEx v8 ACMG-59 data (834 donors, 49 tissues, 15,197 samples, 59 genes),
  normalized with ``hyfa.pp.normalize_gtex``, trained on the paper's 500 training donors;
- ``gtex-scale``: whole-transcriptome scale, the paper's GTEx v8 shape: the bundled data's real
  donor x tissue pattern (15,197 samples, 2-39 tissues per donor) and split, with 12,557 genes
  (``--n-genes``) of random standard-normal (normalized) expression;
- ``simulated``: a GTEx-shaped cohort from ``hyfa.data.simulate`` (834 donors, 49 tissues, about 18
  tissues per donor, ``--n-genes`` genes, 2,000 by default), with 500 random training donors.

Every dimension is set explicitly to the paper's value (Viñas et al. 2023), whatever the package
defaults, with 63 donors per batch. ``--precision`` trains in float32 (``fp32``), bfloat16 autocast
(``bf16``: ``model.train(precision="bf16-mixed")``) or both, one after the other on the same data.
Reported per cohort and precision: seconds per training epoch (validation excluded; the mean over
epochs after the first), training samples (donor x tissue) per second, the part of the epoch spent
outside the training steps (data loading, Lightning), the whole process's peak resident memory while
training (data included; the setup's time and peak are reported apart), FLOP rates (the model's: an
analytic count of its matrix products, forward and backward, from the numbers of source and target
samples actually drawn; the encoder's and decoder's, timed alone at the training shapes), each as a
fraction of what ``torch.matmul`` reaches here, measured in the same process at the encoder, decoder
and message-MLP shapes, and the **GEMM floor**: the seconds per epoch that the encoder's forward and
weight-gradient products and the decoder's forward and backward products (hidden layer and both gene
layers) need at the ``torch.matmul`` rates of the same run, at the run's precision; message passing,
the predictor, elementwise work and the optimizer count as zero. "floor %" is floor / epoch time.

On shared machines the GEMM rate moves with the load, so compare runs by their fraction of it, or
interleave them; there, one torch thread (``--threads 1``) can also be faster than several, which
wait for each other. ``--reuse-freed-memory`` keeps freed memory in the process (glibc's
``mallopt``) rather than mapping fresh pages for every large tensor.

Examples
--------
    python benchmarks/train_speed.py                      # gtex and simulated, 2 epochs, fp32
    python benchmarks/train_speed.py --cohort gtex-scale --precision both --threads 1
    python benchmarks/train_speed.py --cohort gtex --epochs 5 --threads 1 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings

from _measure import (
    current_memory_gb,
    epoch_timer,
    median_time,
    peak_memory_gb,
    reset_peak_memory,
    reuse_freed_memory,
)

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
COHORTS = ("gtex", "simulated", "gtex-scale")
#: Genes of the ``gtex-scale`` cohort: the paper's GTEx v8 set.
GTEX_SCALE_GENES = 12_557
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
    parser.add_argument(
        "--n-genes",
        type=int,
        default=None,
        help="genes of the simulated (2000) or gtex-scale (12,557) cohort",
    )
    parser.add_argument(
        "--precision", choices=[*PRECISIONS, "both"], default="fp32", help="training precision(s)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--reuse-freed-memory",
        action="store_true",
        help="keep freed memory in the process (glibc) instead of returning it to the system",
    )
    parser.add_argument("--seed", type=int, default=0, help="scvi-tools seed")
    parser.add_argument("--child", choices=COHORTS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- cohorts ------------------------------------------------------------------------------------
def gtex_cohort():
    """Return the normalized GTEx ACMG-59 MuData with the paper's split in ``obs["split"]``."""
    import hyfa

    mdata = hyfa.data.gtex_acmg59()
    hyfa.pp.normalize_gtex(mdata)
    hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    return mdata


def gtex_scale_cohort(n_genes: int, seed: int, register: bool = True):
    """Return the bundled GTEx data's donor x tissue pattern filled with ``n_genes`` random normalized genes.

    The 834 donors, 49 tissues and 15,197 samples (2-39 tissues per donor) and the paper's split of
    ``hyfa.data.gtex_acmg59()``; every sample's expression is standard normal (float32). With
    ``register``, the MuData is registered with ``HYFA.setup_mudata``.
    """
    import anndata as ad
    import mudata as md
    import numpy as np

    import hyfa

    pattern = hyfa.data.gtex_acmg59()
    rng = np.random.default_rng(seed)
    genes = [f"gene_{i}" for i in range(n_genes)]
    tissues = {}
    for name, tissue in pattern.mod.items():
        x = rng.standard_normal((tissue.n_obs, n_genes), dtype=np.float32)
        tissues[name] = ad.AnnData(X=x, obs=tissue.obs[[]].copy(), var={"gene": genes})
        tissues[name].var_names = genes
    mdata = md.MuData(tissues)
    mdata.obs = mdata.obs.join(pattern.obs[["split"]])
    del pattern
    if register:
        hyfa.HYFA.setup_mudata(mdata)
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


# -- timing ------------------------------------------------------------------------------------
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
    """Return ``torch.matmul`` GFLOP/s at the encoder, decoder (hidden and gene layers) and message-MLP shapes."""
    n_attr = hp["n_metagenes"] * hp["n_factors"]
    n_msg = hp["n_heads"] * hp["n_head_dim"]
    return {
        "encoder": gemm_rate(n_sources, n_genes, n_attr, dtype),
        "decoder": gemm_rate(n_targets, n_attr, hp["n_hidden_decoder"], dtype),
        "decoder_genes": gemm_rate(n_targets, hp["n_hidden_decoder"], 2 * n_genes, dtype),
        "message": gemm_rate(n_sources * hp["n_metagenes"], hp["n_factors"], n_msg, dtype),
    }


def gemm_floor(hp: dict, n_genes: int, batches: list[tuple[int, int, int]], rates: dict) -> dict:
    """Return the seconds per epoch that the encoder's and decoder's matrix products alone need.

    Counted: the encoder's forward and weight-gradient products (its input needs no gradient) and
    the decoder's forward and backward products (hidden layer and both gene layers, mean and
    scale), each at the ``torch.matmul`` rate measured at its forward shape; everything else
    (message passing, predictor, elementwise work, optimizer) counts as zero.
    """
    n_attr, n_hidden = hp["n_metagenes"] * hp["n_factors"], hp["n_hidden_decoder"]
    encoder_s = decoder_s = 0.0
    for _, n_sources, n_targets in batches:
        encoder_s += 2 * (2 * n_sources * n_genes * n_attr) / (rates["encoder"] * 1e9)
        decoder_s += 3 * (2 * n_targets * n_attr * n_hidden) / (rates["decoder"] * 1e9)
        decoder_s += 3 * (2 * n_targets * n_hidden * 2 * n_genes) / (rates["decoder_genes"] * 1e9)
    return {"encoder_s": encoder_s, "decoder_s": decoder_s, "floor_s": encoder_s + decoder_s}


def build_cohort(cohort: str, args: argparse.Namespace):
    """Return the registered MuData of ``cohort``."""
    if cohort == "gtex":
        return gtex_cohort()
    if cohort == "gtex-scale":
        return gtex_scale_cohort(args.n_genes or GTEX_SCALE_GENES, args.seed)
    return simulated_cohort(args.n_genes or 2000, args.seed)


def train_once(mdata, cohort: str, precision: str, args: argparse.Namespace) -> dict:
    """Train a fresh model on ``mdata`` at ``precision`` and return its measurements."""
    import gc

    import numpy as np
    import scvi
    import torch

    import hyfa

    gc.collect()
    scvi.settings.seed = args.seed
    reset_peak_memory()
    before_training = current_memory_gb()
    start = time.perf_counter()
    model = hyfa.HYFA(mdata, **PAPER_HYPERPARAMETERS)
    counts = record_sample_counts(model.module)
    timer = epoch_timer()
    model.train(
        max_epochs=args.epochs,
        split_key="split",
        batch_size=BATCH_SIZE,
        precision=PRECISIONS[precision],
        enable_progress_bar=False,
        callbacks=[timer],
    )
    total_s = time.perf_counter() - start
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
    rates = {  # the better of two measurements, interleaved: on a shared machine the load moves
        name: matmul_rates(PAPER_HYPERPARAMETERS, n_genes, mean_sources, mean_targets, d)
        for name, d in dtypes.items()
    }
    for name, d in dtypes.items():
        again = matmul_rates(PAPER_HYPERPARAMETERS, n_genes, mean_sources, mean_targets, d)
        rates[name] = {shape: max(rate, again[shape]) for shape, rate in rates[name].items()}
    floors = {
        name: gemm_floor(PAPER_HYPERPARAMETERS, n_genes, counts[:n_batches], rate)
        for name, rate in rates.items()
    }
    parts = part_rates(model.module, PAPER_HYPERPARAMETERS, n_genes, mean_sources, mean_targets, precision)
    del model
    return {
        "cohort": cohort,
        "genes": n_genes,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "reuse_freed_memory": args.reuse_freed_memory,
        "epochs": args.epochs,
        "train_s": total_s,
        "batches_per_epoch": n_batches,
        "samples_per_epoch": samples,
        "s_per_epoch": epoch_s,
        "best_s_per_epoch": min(timer.epochs[first:]),
        "epoch_s": timer.epochs,
        "outside_steps_s": outside_s,
        "samples_per_s": samples / epoch_s,
        "peak_rss_gb": peak,
        "rss_before_training_gb": before_training,
        "model_gflops_per_s": flops / epoch_s / 1e9,
        "matmul_gflops_per_s": rates,
        "gemm_floor": floors,
        "part_gflops_per_s": parts,
        "mean_sources_per_batch": mean_sources,
        "mean_targets_per_batch": mean_targets,
    }


def run_cohort(cohort: str, args: argparse.Namespace) -> list[dict]:
    """Build one cohort, train it at each requested precision and return the measurements."""
    warnings.filterwarnings("ignore")
    import scvi
    import torch

    scvi.settings.verbosity = logging.WARNING
    logging.getLogger("lightning").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reuse_freed_memory:
        args.reuse_freed_memory = reuse_freed_memory()
    start = time.perf_counter()
    mdata = build_cohort(cohort, args)
    setup = {"setup_s": time.perf_counter() - start, "setup_peak_rss_gb": peak_memory_gb()}
    precisions = list(PRECISIONS) if args.precision == "both" else [args.precision]
    return [{**train_once(mdata, cohort, p, args), **setup} for p in precisions]


# -- report -------------------------------------------------------------------------------------
def run_child(cohort: str, argv: list[str]) -> list[dict]:
    """Run one cohort in a child process and return its results."""
    command = [sys.executable, __file__, *argv, "--child", cohort]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"The {cohort} run failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")


def print_table(results: list[dict]) -> None:
    """Print the measurements of each cohort and precision."""
    header = (
        f"{'cohort':10} {'genes':>6} {'prec':>5} {'thr':>4} {'s/epoch':>8} {'outside':>8} {'samples/s':>10} "
        f"{'peak GB':>8} {'+train':>7} {'model GF/s':>11} {'% msg GEMM':>10} {'enc %':>6} {'dec %':>6} "
        f"{'floor s':>8} {'floor %':>8} {'best s':>7} {'best %':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        rate = r["matmul_gflops_per_s"][r["precision"]]
        floor = r["gemm_floor"][r["precision"]]["floor_s"]
        print(
            f"{r['cohort']:10} {r['genes']:>6} {r['precision']:>5} {r['threads']:>4} {r['s_per_epoch']:>8.2f} "
            f"{r['outside_steps_s']:>8.2f} {r['samples_per_s']:>10.0f} {r['peak_rss_gb']:>8.2f} "
            f"{r['peak_rss_gb'] - r['rss_before_training_gb']:>7.2f} "
            f"{r['model_gflops_per_s']:>11.1f} {100 * r['model_gflops_per_s'] / rate['message']:>9.0f}% "
            f"{100 * r['part_gflops_per_s']['encoder'] / rate['encoder']:>5.0f}% "
            f"{100 * r['part_gflops_per_s']['decoder'] / rate['decoder']:>5.0f}% "
            f"{floor:>8.2f} {100 * floor / r['s_per_epoch']:>7.0f}% {r['best_s_per_epoch']:>7.2f} "
            f"{100 * floor / r['best_s_per_epoch']:>6.0f}%"
        )
    by_cohort = {}
    for r in results:
        by_cohort.setdefault(r["cohort"], {})[r["precision"]] = r
    for cohort, runs in by_cohort.items():
        if len(runs) == 2:
            speedup = runs["fp32"]["s_per_epoch"] / runs["bf16"]["s_per_epoch"]
            best = runs["fp32"]["best_s_per_epoch"] / runs["bf16"]["best_s_per_epoch"]
            print(f"\n{cohort}: bf16-mixed is {speedup:.2f}x the fp32 speed ({best:.2f}x by the best epochs)")
        setup = next(iter(runs.values()))
        print(
            f"{cohort}: setup {setup['setup_s']:.0f} s, peak RSS during setup {setup['setup_peak_rss_gb']:.2f} GB"
        )
    print(
        "\ntorch.matmul GFLOP/s measured in each run (encoder / decoder hidden / decoder genes / message-MLP):"
    )
    for r in results:
        for dtype, rates in r["matmul_gflops_per_s"].items():
            shapes = " / ".join(f"{rates[k]:.0f}" for k in ("encoder", "decoder", "decoder_genes", "message"))
            print(f"  {r['cohort']:10} {r['precision']} run, {dtype}: {shapes}")
        parts = r["part_gflops_per_s"]
        print(
            f"  {r['cohort']:10} {r['precision']} run: encoder / decoder reach "
            f"{parts['encoder']:.0f} / {parts['decoder']:.0f} GFLOP/s; epochs "
            + ", ".join(f"{e:.2f}" for e in r["epoch_s"])
            + " s"
        )
    print(
        "\ns/epoch: training epoch without validation (mean after the first); outside: part of it spent "
        "outside the training steps (data loading, Lightning); peak GB: whole-process peak resident memory "
        "while training (data included), +train: its rise over the memory held before; % msg GEMM: the "
        "model's FLOP rate as a fraction of torch.matmul at the message-MLP shape; enc % / dec %: the "
        "encoder's and decoder's rates alone (forward + backward) as fractions of torch.matmul at their "
        "shapes; floor s: the GEMM floor, the seconds per epoch of the encoder's forward and "
        "weight-gradient products and the decoder's forward and backward products (hidden and both gene "
        "layers) at the torch.matmul rates measured in the same run (at the run's precision; the better of "
        "two measurements); floor %: floor s / s per epoch; best s, best %: the fastest epoch after the "
        "first, and the floor's fraction of it (on a shared machine, the least disturbed epoch)."
    )


def main(argv=None) -> None:
    """Run the benchmark."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        print(RESULT_PREFIX + json.dumps(run_cohort(args.child, args)), flush=True)
        return
    cohorts = COHORTS[:2] if args.cohort == "both" else (args.cohort,)
    results = []
    for cohort in cohorts:
        start = time.perf_counter()
        results += run_child(cohort, argv)
        print(f"[{cohort}: {time.perf_counter() - start:.0f} s]", flush=True)
    print_table(results)


if __name__ == "__main__":
    main()
