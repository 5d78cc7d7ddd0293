"""Interleaved A/B of HYFA training steps at GTEx scale, in CPU seconds (robust to a shared machine's load).

``old`` emulates the training path before issue #11's work: torch's default (single-tensor) Adam,
the encoder as an autocast ``nn.Linear``, the loss from ``Normal.log_prob``; ``new`` is the current
code (fused Adam, low-precision encoder buffers, fused Gaussian NLL). Both run in one process with
one torch thread on the same minibatches of the ``gtex-scale`` cohort of ``train_speed.py``, their
steps alternated, and each step is timed in process CPU seconds (page faults included), which a
busy machine's other processes barely move, next to the GEMM floor per step in CPU seconds
(encoder forward + weight gradient, decoder forward + backward, as in ``train_speed.py``).

Usage: ``python benchmarks/train_step_ab.py [n_genes=12557] [rounds=4]``
"""

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.distributions import Normal

sys.path.insert(0, str(Path(__file__).parent))
import train_speed as ts

CONFIGS = ("old", "new")


def old_forward(self, x):
    """The encoder before: an autocast linear layer (fresh casts of the weight and its gradient)."""
    return self.activation(self.linear(x)).view(-1, self.n_metagenes, self.n_factors)


def old_nll(x, loc, scale):
    """The loss before: ``Normal.log_prob``."""
    return -Normal(loc, scale, validate_args=False).log_prob(x).mean(dim=-1)


def cpu_median(function, repeats: int = 3) -> float:
    """Return the median CPU seconds of ``function()`` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return sorted(times)[len(times) // 2]


def floor_cpu(n_sources: int, n_targets: int, n_genes: int, dtype) -> float:
    """Return the GEMM floor of one step in CPU seconds (see ``train_speed.gemm_floor``)."""
    hp = ts.PAPER_HYPERPARAMETERS
    n_attr, n_hidden = hp["n_metagenes"] * hp["n_factors"], hp["n_hidden_decoder"]

    def mm(m, k, n):
        a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
        return cpu_median(lambda: torch.mm(a, b))

    encoder = 2 * mm(n_sources, n_genes, n_attr)
    return encoder + 3 * mm(n_targets, n_attr, n_hidden) + 3 * mm(n_targets, n_hidden, 2 * n_genes)


def main() -> None:
    """Run the A/B and print CPU seconds per step, GEMM-floor fractions and bf16 speed-ups."""
    warnings.filterwarnings("ignore")
    import scvi
    from scvi.dataloaders import AnnDataLoader

    import hyfa
    import hyfa.nn as hyfa_nn
    from hyfa.module._optim import InPlaceAdam
    from hyfa.nn import _encoder

    n_genes = int(sys.argv[1]) if len(sys.argv) > 1 else ts.GTEX_SCALE_GENES
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    mdata = ts.gtex_scale_cohort(n_genes, 0)
    model = hyfa.HYFA(mdata, **ts.PAPER_HYPERPARAMETERS)
    module = model.module
    train = np.where(mdata.obs["split"].values == "train")[0]
    loader = AnnDataLoader(model.adata_manager, indices=train, batch_size=63, shuffle=True)
    batches = [batch for _, batch in zip(range(4), loader, strict=False)]
    module.train()
    paths = {"old": (old_forward, old_nll), "new": (_encoder.MetageneEncoder.forward, hyfa_nn.gaussian_nll)}
    optimizers = {
        "old": torch.optim.Adam(module.parameters(), lr=4.56e-4, eps=1e-8),
        "new": InPlaceAdam(4.56e-4)(module.parameters()),
    }

    def step(config, batch, bf16):
        _encoder.MetageneEncoder.forward, hyfa_nn.gaussian_nll = paths[config]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            inputs = module._get_inference_input(batch)
            out = module.inference(**inputs)
            loss = module.loss(batch, out, module.generative(**module._get_generative_input(batch, out))).loss
        loss.backward()
        optimizers[config].step()
        optimizers[config].zero_grad()
        return int(inputs["source_mask"].sum()), int(inputs["target_mask"].sum())

    results, medians = {}, {}
    for precision in ("fp32", "bf16"):
        bf16 = precision == "bf16"
        for config in CONFIGS:
            step(config, batches[3], bf16)  # warm-up
        for r in range(rounds):
            for config in CONFIGS if r % 2 == 0 else CONFIGS[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                shape = step(config, batches[r % 3], bf16)
                row = (time.process_time() - cpu, time.perf_counter() - wall, *shape)
                results.setdefault((precision, config), []).append(row)
                print(f"{precision} {config} round {r}: CPU {row[0]:.2f} s, wall {row[1]:.2f} s", flush=True)
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        floor = np.mean([floor_cpu(s, t, n_genes, dtype) for *_, s, t in results[(precision, "new")][:3]])
        for config in CONFIGS:
            cpu = np.array([row[0] for row in results[(precision, config)]])
            medians[(precision, config)] = np.median(cpu)
            print(
                f"{precision} {config}: CPU s/step median {np.median(cpu):.2f} (min {cpu.min():.2f}); "
                f"GEMM floor {floor:.2f} CPU s/step = {floor / np.median(cpu):.2f} of it"
            )
    for config in CONFIGS:
        print(
            f"{config}: bf16 is {medians[('fp32', config)] / medians[('bf16', config)]:.2f}x fp32 (CPU s/step)"
        )


if __name__ == "__main__":
    main()
