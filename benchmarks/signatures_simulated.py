"""Cell-type signatures by transfer learning on simulated paired bulk and single-cell data, vs a mean-signature baseline.

Simulates raw bulk counts (``hyfa.data.simulate(counts=True)``) and single cells for half of the
donors in every tissue but the last (``hyfa.data.simulate_single_cell``), aggregates them with
``hyfa.pp.aggregate_signatures``, trains a bulk NB model (without the test donors), transfers it to
the signatures of the training donors and predicts the signatures of held-out donors, in a tissue
with single-cell data and in the tissue without any. Scores against the noise-free truth:

- per gene across donors, on normalized proportions: R^2 of HYFA and of the per-(tissue, cell type)
  mean signature of the training donors (for the tissue without cells: the cell type's mean over
  the other tissues), and Pearson r of log proportions (undefined for the constant baseline);
- per signature, Pearson r of log1p counts with the observed n_cells and library size (dominated by
  n_cells, library and gene means, so high for the baseline too).

Usage::

    python benchmarks/signatures_simulated.py --bulk-epochs 300 --transfer-epochs 150
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np


def proportions(x) -> np.ndarray:
    """Return each row divided by its total."""
    x = np.asarray(x, dtype=np.float64)
    return x / x.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-donors", type=int, default=240)
    parser.add_argument("--bulk-epochs", type=int, default=300)
    parser.add_argument("--transfer-epochs", type=int, default=150)
    parser.add_argument("--n-test-donors", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    import scvi

    import hyfa

    scvi.settings.verbosity = logging.WARNING
    observed, truth = hyfa.data.simulate(
        n_donors=args.n_donors, n_tissues=5, n_genes=30, missing_rate=0.4, counts=True,
        library_size=(2e3, 2e4), seed=args.seed,
    )  # fmt: skip
    cells, signature_truth = hyfa.data.simulate_single_cell(
        truth, held_out_tissues=1, donor_fraction=0.5, seed=0
    )
    signatures = hyfa.pp.aggregate_signatures(cells, n_top_genes=None, min_profiles=5)
    held_out = list(signature_truth.uns["simulate_single_cell"]["held_out_tissues"])
    sc_donors = sorted(set(signatures.obs["donor"]), key=lambda d: int(d.split("_")[1]))
    test, train = sc_donors[-args.n_test_donors :], sc_donors[: -args.n_test_donors]
    print(
        f"{cells.n_obs} cells -> {signatures.n_obs} signatures x {signatures.n_vars} genes; "
        f"{len(train)} training / {len(test)} test donors; tissue without cells: {held_out}"
    )

    mdata = observed.copy()
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = args.seed
    small = {"n_metagenes": 4, "n_factors": 8, "n_donor_latent": 16, "n_tissue_latent": 8,
             "n_metagene_latent": 8, "n_heads": 2, "n_head_dim": 8, "n_hidden_decoder": 32}  # fmt: skip
    model = hyfa.HYFA(mdata, gene_likelihood="nb", **small)
    t0 = time.perf_counter()
    bulk_train = [d for d in mdata.obs_names if d not in set(test)]
    model.train(args.bulk_epochs, train_donors=bulk_train, lr=3e-3, batch_size=32, enable_progress_bar=False)
    t_bulk = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_rows = signatures.obs["donor"].isin(train).to_numpy()
    model.train_cell_type_signatures(
        signatures[train_rows],
        max_epochs=args.transfer_epochs,
        lr=3e-3,
        batch_size=64,
        enable_progress_bar=False,
    )
    t_transfer = time.perf_counter() - t0
    print(f"bulk training {t_bulk:.1f} s, transfer {t_transfer:.1f} s")

    genes = list(signatures.var_names)
    train_obs = signatures.obs[train_rows]
    for tissue in ["tissue_0", held_out[0]]:
        pred = model.get_cell_type_signatures(donors=test, tissues=[tissue], n_cells=1, library_size=1.0)
        scores = {"HYFA R2": [], "mean R2": [], "HYFA r": []}
        for cell_type in model.cell_types:
            names = [f"{d}|{tissue}|{cell_type}" for d in test]
            true = proportions(signature_truth[names][:, genes].X)
            predicted = proportions(pred[names].X)
            ref = train_obs[(train_obs["tissue"] == tissue) & (train_obs["cell_type"] == cell_type)]
            ref = ref if len(ref) else train_obs[train_obs["cell_type"] == cell_type]
            baseline = proportions(signatures[ref.index].X).mean(axis=0)
            var = true.var(axis=0)
            scores["HYFA R2"] += list(1 - ((predicted - true) ** 2).mean(axis=0) / var)
            scores["mean R2"] += list(1 - ((baseline - true) ** 2).mean(axis=0) / var)
            scores["HYFA r"] += [
                np.corrcoef(np.log(predicted[:, g]), np.log(true[:, g]))[0, 1] for g in range(len(genes))
            ]
        kind = "without single-cell data" if tissue in held_out else "with single-cell data"
        print(
            f"{tissue} ({kind}), per gene across {len(test)} test donors, median over genes x cell types: "
            + ", ".join(f"{k} {np.median(v):.3f}" for k, v in scores.items())
        )

    rows = signatures[signatures.obs["donor"].isin(test)]
    pred = model.get_cell_type_signatures(signatures=rows)
    by_type = {}
    for name, row in rows.obs.iterrows():
        ref = train_obs[(train_obs["tissue"] == row["tissue"]) & (train_obs["cell_type"] == row["cell_type"])]
        by_type[name] = (
            proportions(signatures[ref.index].X).mean(axis=0) * row["n_cells"] * row["library_size"]
        )
    observed_x = np.asarray(rows.X, dtype=np.float64)

    def log_r(a, b):
        return np.corrcoef(np.log1p(a), np.log1p(b))[0, 1]

    hyfa_r = [log_r(p, o) for p, o in zip(pred.X, observed_x, strict=True)]
    base_r = [log_r(by_type[n], o) for n, o in zip(rows.obs_names, observed_x, strict=True)]
    print(
        f"per-signature r of log1p counts ({rows.n_obs} observed test signatures, observed n_cells and library): "
        f"HYFA {np.median(hyfa_r):.3f}, mean signature {np.median(base_r):.3f} (medians)"
    )


if __name__ == "__main__":
    main()
