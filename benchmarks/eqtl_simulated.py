"""eQTL discovery on observed vs HYFA-completed tissues, on simulated data with planted cis-eQTLs.

Simulates expression with genotypes and planted cis-eQTLs (``hyfa.data.simulate_eqtl``: some acting
in every tissue, some in one tissue only), trains HYFA on the observed (incomplete) cohort, completes
each tissue (``HYFA.get_completed_cohort``: observed donors as measured, missing donors imputed from
all of their tissues) and maps cis-eQTLs with tensorQTL (``hyfa.tl.map_cis_eqtl``: ``cis.map_cis``
with permutations, beta-approximated p-values, Benjamini-Hochberg q-values) per target tissue on

- ``observed``: the donors who gave the tissue;
- ``completed``: observed plus imputed donors;
- ``completed (sd <= q)``: observed plus the imputed donors whose mean predictive sd over genes is
  among the lowest ``--sd-quantile`` of the imputed donors (a down-weighting by ``sd``).

An eGene (q <= ``--fdr``) is true when the gene has a planted eQTL acting in that tissue. Printed:
true and false eGenes and the empirical FDR (false / all eGenes) per setting, split by shared
vs tissue-specific eQTLs. Needs ``pip install "hyfa[eqtl]"``.

Usage::

    python benchmarks/eqtl_simulated.py            # ~2 min on 2 CPU cores
    python benchmarks/eqtl_simulated.py --n-donors 400 --epochs 300
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings

import numpy as np
import pandas as pd
import torch

#: A small architecture for 40-60 genes (the ``quick`` preset is sized for GTEx panels).
SMALL = {
    "n_metagenes": 8,
    "n_factors": 16,
    "n_donor_latent": 64,
    "n_tissue_latent": 16,
    "n_metagene_latent": 16,
    "n_heads": 4,
    "n_head_dim": 8,
    "n_hidden_decoder": 64,
}


def run(
    n_donors=300,
    n_tissues=6,
    n_genes=60,
    n_variants=100,
    missing_rate=0.6,
    epochs=200,
    n_permutations=1000,
    fdr=0.05,
    sd_quantile=None,
    seed=0,
    model_kwargs=None,
    n_target_tissues=None,
    **simulate_kwargs,
) -> tuple[pd.DataFrame, dict]:
    """Return the per-tissue eGene table (rows: tissue x setting x kind) and the fitted objects."""
    import scvi

    import hyfa

    scvi.settings.seed = seed  # reproducible training
    observed, truth, genotypes = hyfa.data.simulate_eqtl(
        n_donors=n_donors,
        n_tissues=n_tissues,
        n_genes=n_genes,
        n_variants=n_variants,
        missing_rate=missing_rate,
        seed=seed,
        **simulate_kwargs,
    )
    hyfa.HYFA.setup_mudata(observed)
    model = hyfa.HYFA(observed, **(model_kwargs or SMALL))
    model.train(max_epochs=epochs, batch_size=64)
    table = truth.uns["eqtl"]
    rows = []
    completed = model.get_completed_cohort()
    for tissue in model.tissues[:n_target_tissues]:
        full = completed[tissue]
        settings = {"observed": observed[tissue], "completed": full}
        if sd_quantile is not None:
            imputed = full.obs["imputed"].to_numpy()
            sd = full.layers["sd"].mean(axis=1)
            cut = np.quantile(sd[imputed], sd_quantile) if imputed.any() else 0.0
            settings[f"completed (sd <= q{sd_quantile:g})"] = full[~imputed | (sd <= cut)]
        for name, adata in settings.items():
            results = hyfa.tl.map_cis_eqtl(adata, genotypes, n_permutations=n_permutations, seed=seed)
            scores = hyfa.tl.score_egenes(results, table, tissue, fdr=fdr)
            scores.insert(0, "donors", adata.n_obs)
            scores.insert(0, "setting", name)
            scores.insert(0, "tissue", tissue)
            rows.append(scores.rename_axis("kind").reset_index())
    signal = genetic_signal(completed, truth, genotypes, model.tissues[:n_target_tissues])
    objects = {"model": model, "observed": observed, "truth": truth, "genotypes": genotypes, "signal": signal}
    return pd.concat(rows, ignore_index=True), objects


def genetic_signal(completed, truth, genotypes, tissues) -> pd.DataFrame:
    """Return the mean signed correlation of causal dosage with expression, observed vs imputed donors, per kind."""
    table = truth.uns["eqtl"]
    rows = []
    for tissue in tissues:
        adata = completed[tissue]
        imputed = adata.obs["imputed"].to_numpy()
        for _, row in table[(table["tissue"] == tissue) & table["causal"]].iterrows():
            dosage = genotypes[adata.obs_names, row["variant"]].X.ravel()
            x = adata[:, row["gene"]].X.ravel()
            sign = np.sign(row["beta"])
            rows.append(
                {
                    "kind": row["kind"],
                    "observed donors": sign * np.corrcoef(dosage[~imputed], x[~imputed])[0, 1],
                    "imputed donors": sign * np.corrcoef(dosage[imputed], x[imputed])[0, 1],
                }
            )
    return pd.DataFrame(rows).groupby("kind").mean().round(3)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Return totals over tissues per setting and kind, with the empirical FDR."""
    total = results.groupby(["setting", "kind"], sort=False)[["causal", "true", "false"]].sum()
    total["empirical_fdr"] = (total["false"] / (total["true"] + total["false"]).clip(lower=1)).round(3)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-donors", type=int, default=300)
    parser.add_argument("--n-tissues", type=int, default=8)
    parser.add_argument("--n-genes", type=int, default=40)
    parser.add_argument("--n-variants", type=int, default=50)
    parser.add_argument("--missing-rate", type=float, default=0.7)
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--n-permutations", type=int, default=1000)
    parser.add_argument("--fdr", type=float, default=0.05)
    parser.add_argument("--sd-quantile", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-target-tissues", type=int, default=None, help="map the first N tissues only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared cores)")
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help="JSON of hyfa.HYFA keyword arguments over the small architecture, e.g. '{\"gene_skip\": false}'",
    )
    args = parser.parse_args()
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results, objects = run(
        n_donors=args.n_donors,
        n_tissues=args.n_tissues,
        n_genes=args.n_genes,
        n_variants=args.n_variants,
        missing_rate=args.missing_rate,
        epochs=args.epochs,
        n_permutations=args.n_permutations,
        fdr=args.fdr,
        sd_quantile=args.sd_quantile,
        seed=args.seed,
        n_target_tissues=args.n_target_tissues,
        model_kwargs={**SMALL, **args.model_kwargs},
    )
    pd.set_option("display.width", 160)
    per_tissue = results[results["kind"] == "all"].pivot_table(
        index="tissue", columns="setting", values=["donors", "true", "false"], sort=False
    )
    print(f"Per tissue, all genes (eGenes at q <= {args.fdr}):")
    print(per_tissue.astype(int).to_string())
    print("\nTotals over tissues, by kind of planted eQTL:")
    print(summarize(results).to_string())
    print("\nGenetic signal carried: mean signed r(causal dosage, expression) of true eQTL genes:")
    print(objects["signal"].to_string())
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
