"""HYFA learns nonlinear cross-tissue structure on simulated data with ~66% of samples missing."""

import mudata as md
import numpy as np
import pytest
import scvi

import hyfa

SOURCE = "tissue_0"
#: Model and training settings of the learning tests (fixed; the thresholds below were measured with them).
MODEL = {
    "n_metagenes": 8,
    "n_factors": 16,
    "n_donor_latent": 32,
    "n_tissue_latent": 16,
    "n_metagene_latent": 8,
    "n_heads": 4,
    "n_head_dim": 8,
    "n_hidden_decoder": 64,
    "dropout_rate": 0.05,
}
TRAIN = {"max_epochs": 300, "lr": 5e-3, "batch_size": 32}
#: Each tissue reveals the donor's latent state only partly, so that more sources should help.
SIM = {"n_donors": 400, "n_tissues": 8, "n_genes": 20, "n_latent": 6, "noise_sd": 0.6, "seed": 0}


@pytest.fixture(scope="module")
def fitted():
    observed, truth = hyfa.data.simulate(**SIM)
    donors = observed.obs_names
    rng = np.random.default_rng(0)
    test = set(rng.choice(donors, size=100, replace=False))
    train = [d for d in donors if d not in test]
    hyfa.HYFA.setup_mudata(observed)
    scvi.settings.seed = 0
    model = hyfa.HYFA(observed, **MODEL)
    model.train(train_donors=train, enable_progress_bar=False, **TRAIN)
    assert not set(observed.obs_names[model.train_indices_]) & test
    test = [d for d in donors if d in test]
    return model, observed, truth, train, test


def _per_gene_r(pred, true):
    pred, true = pred - pred.mean(0), true - true.mean(0)
    return float(np.mean((pred * true).sum(0) / np.sqrt((pred**2).sum(0) * (true**2).sum(0))))


def _mse(pred, true):
    return float(np.mean((pred - true) ** 2))


def test_single_source_beats_mean_and_linear_baselines(fitted):
    model, observed, truth, train, test = fitted
    donors = [d for d in test if d in set(observed.mod[SOURCE].obs_names)]
    targets = [t for t in model.tissues if t != SOURCE]
    hyfa_pred = model.get_imputed_expression(target_tissues=targets, source_tissues=[SOURCE], donors=donors)
    mean = hyfa.tl.MeanImputation(observed).fit(train)
    teebot = hyfa.tl.TEEBoT(observed, n_components=10).fit(train)
    scores = {"hyfa": [], "teebot": [], "mean": []}
    mse = {"hyfa": [], "teebot": [], "mean": []}
    for t in targets:
        true = truth.mod[t][donors].X
        preds = {
            "hyfa": hyfa_pred[t].X,
            "teebot": teebot.get_imputed_expression(
                target_tissues=t, source_tissues=[SOURCE], donors=donors
            ).X,
            "mean": mean.get_imputed_expression(target_tissues=t, donors=donors).X,
        }
        for k, p in preds.items():
            mse[k].append(_mse(p, true))
            if k != "mean":
                scores[k].append(_per_gene_r(p, true))
    r = {k: np.mean(v) for k, v in scores.items() if v}
    m = {k: np.mean(v) for k, v in mse.items()}
    print(f"per-gene r {r}; mse {m}")
    assert m["hyfa"] < 0.8 * m["mean"]
    assert m["hyfa"] < 0.95 * m["teebot"]
    assert r["hyfa"] > r["teebot"] + 0.02


def test_more_sources_beat_one(fitted):
    model, observed, truth, train, test = fitted
    has = {t: set(observed.mod[t].obs_names) for t in model.tissues}
    donors = [d for d in test if d in has[SOURCE] and sum(d in s for s in has.values()) >= 3]
    assert len(donors) >= 15
    gains = []
    for t in model.tissues:
        if t == SOURCE:
            continue
        true = truth.mod[t][donors].X
        one = model.get_imputed_expression(target_tissues=t, source_tissues=[SOURCE], donors=donors).X
        many = model.get_imputed_expression(target_tissues=t, donors=donors).X
        gains.append(_mse(one, true) - _mse(many, true))
    print(f"mse gain of all sources over one: {np.round(gains, 3)}")
    assert np.mean(gains) > 0.02 and sum(g > 0 for g in gains) >= 4


def test_imputation_output_shape_and_samples(fitted):
    model, observed, truth, train, test = fitted
    out, draws = model.get_imputed_expression(
        target_tissues="tissue_1", donors=test[:10], n_samples=50, return_samples=True
    )
    assert (
        out.shape == (10, SIM["n_genes"])
        and list(out.obs_names) == test[:10]
        and list(out.var_names) == model.genes
    )
    assert draws.shape == (50, 10, SIM["n_genes"])
    np.testing.assert_allclose(out.X, draws.mean(0))
    mean = model.get_imputed_expression(target_tissues="tissue_1", donors=test[:10])
    z = (draws.mean(0) - mean.X) / (mean.layers["sd"] / np.sqrt(50))
    assert np.abs(z).mean() < 1.5  # draws come from N(mean, sd)
    both = model.get_imputed_expression(target_tissues=["tissue_1", "tissue_2"], donors=test[:10])
    assert isinstance(both, md.MuData) and set(both.mod) == {"tissue_1", "tissue_2"}
    assert both["tissue_2"].uns["hyfa"]["target_tissue"] == "tissue_2"
    assert "tissue_2" not in both["tissue_2"].uns["hyfa"]["source_tissues"]
    emb = model.get_latent_representation(donors=test[:10])
    assert emb.shape == (10, MODEL["n_donor_latent"])
    assert model.get_latent_representation(kind="tissue").shape == (8, MODEL["n_tissue_latent"])
    assert model.get_latent_representation(kind="metagene").shape == (
        MODEL["n_metagenes"],
        MODEL["n_metagene_latent"],
    )
