"""Cell-type signatures by transfer learning, on simulated paired bulk and single-cell data with ground truth."""

import numpy as np
import pandas as pd
import pytest
import scvi
import torch
from hyfa_testing import TINY

import hyfa

N_DONORS = 240


@pytest.fixture(scope="module")
def paired():
    observed, truth = hyfa.data.simulate(
        n_donors=N_DONORS,
        n_tissues=5,
        n_genes=30,
        missing_rate=0.4,
        counts=True,
        library_size=(2e3, 2e4),
        seed=0,
    )
    cells, signature_truth = hyfa.data.simulate_single_cell(
        truth, held_out_tissues=1, donor_fraction=0.5, seed=0
    )
    signatures = hyfa.pp.aggregate_signatures(cells, n_top_genes=None, min_profiles=5)
    return observed, cells, signatures, signature_truth


@pytest.fixture(scope="module")
def transferred(paired):
    observed, _, signatures, _ = paired
    sc_donors = sorted(set(signatures.obs["donor"]), key=lambda d: int(d.split("_")[1]))
    test_donors = sc_donors[-25:]
    train_donors = sc_donors[:-25]
    mdata = observed.copy()
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, gene_likelihood="nb", **TINY)
    bulk_train = [d for d in mdata.obs_names if d not in set(test_donors)]
    model.train(max_epochs=300, train_donors=bulk_train, lr=3e-3, batch_size=32, enable_progress_bar=False)
    train_rows = signatures.obs["donor"].isin(train_donors).to_numpy()
    model.train_cell_type_signatures(
        signatures[train_rows], max_epochs=150, lr=3e-3, batch_size=64, enable_progress_bar=False
    )
    return model, mdata, train_donors, test_donors


def _proportions(x):
    """Return each row divided by its total (normalized proportions)."""
    x = np.asarray(x, dtype=np.float64)
    return x / x.sum(axis=1, keepdims=True)


def _scores(model, paired, train_donors, test_donors, tissue):
    """Return median per-gene scores across test donors, on normalized proportions.

    ``hyfa_r2`` / ``mean_r2``: R^2 of HYFA and of the per-(tissue, cell type) mean signature of the
    training donors (for a tissue without cells, the cell type's mean over the other tissues);
    ``hyfa_r``: Pearson r of log proportions (undefined for the constant mean signature).
    """
    _, _, signatures, truth = paired
    genes = list(signatures.var_names)
    pred = model.get_cell_type_signatures(donors=test_donors, tissues=[tissue], n_cells=1, library_size=1.0)
    train_obs = signatures.obs[signatures.obs["donor"].isin(train_donors)]
    out = {"hyfa_r2": [], "hyfa_r": [], "mean_r2": []}
    for cell_type in model.cell_types:
        names = [f"{d}|{tissue}|{cell_type}" for d in test_donors]
        true = _proportions(truth[names][:, genes].X)
        predicted = _proportions(pred[names].X)
        same_tissue = train_obs[(train_obs["tissue"] == tissue) & (train_obs["cell_type"] == cell_type)]
        reference = same_tissue if len(same_tissue) else train_obs[train_obs["cell_type"] == cell_type]
        mean_signature = _proportions(signatures[reference.index].X).mean(axis=0)
        variance = true.var(axis=0)
        out["hyfa_r2"].append(1 - ((predicted - true) ** 2).mean(axis=0) / variance)
        out["mean_r2"].append(1 - ((mean_signature - true) ** 2).mean(axis=0) / variance)
        log_true, log_predicted = np.log(true), np.log(predicted)
        out["hyfa_r"].append(
            [np.corrcoef(log_predicted[:, g], log_true[:, g])[0, 1] for g in range(len(genes))]
        )
    return {k: float(np.median(np.concatenate(v))) for k, v in out.items()}


def test_held_out_tissue_contributed_no_single_cell_data(paired, transferred):
    _, cells, signatures, truth = paired
    model = transferred[0]
    held_out = truth.uns["simulate_single_cell"]["held_out_tissues"]
    assert list(held_out) == ["tissue_4"]
    assert not cells.obs["tissue"].isin(held_out).any()
    assert not signatures.obs["tissue"].isin(held_out).any()
    assert "tissue_4" not in model.signature_setup_["tissues"]
    assert "tissue_4" in model.tissues  # known to the bulk model


def test_signatures_of_held_out_donors_beat_the_mean_signature_per_gene(paired, transferred):
    model, _, train_donors, test_donors = transferred
    scores = _scores(model, paired, train_donors, test_donors, "tissue_0")
    assert scores["hyfa_r2"] > scores["mean_r2"] + 0.1, scores
    assert scores["hyfa_r"] > 0.5, scores


def test_signatures_of_a_tissue_without_single_cell_data_follow_the_donors(paired, transferred):
    """tissue_4 gave no cells: no per-(tissue, cell type) mean exists, and a constant signature has r = 0.

    The cell types' mean over the other tissues misses the tissue's gene levels (R^2 -0.31); HYFA
    takes them from the bulk model's profile of the tissue (the bulk offset; R^2 -0.05, and -0.40
    without the offset) and, across donors, correlates with the truth (r 0.57; 0.44 without).
    """
    model, _, train_donors, test_donors = transferred
    scores = _scores(model, paired, train_donors, test_donors, "tissue_4")
    assert scores["hyfa_r2"] > scores["mean_r2"] + 0.1, scores
    assert scores["hyfa_r"] > 0.4, scores


def test_observed_rows_use_observed_cells_and_library(paired, transferred):
    _, _, signatures, _ = paired
    model, _, _, test_donors = transferred
    rows = signatures[signatures.obs["donor"].isin(test_donors)]
    pred = model.get_cell_type_signatures(signatures=rows)
    assert list(pred.obs_names) == list(rows.obs_names)
    np.testing.assert_allclose(pred.obs["n_cells"], rows.obs["n_cells"])
    np.testing.assert_allclose(pred.obs["library_size"], rows.obs["library_size"], rtol=1e-6)
    # ZINB mean = n_cells * library * s * (1 - pi): at most the expected total, and of its order
    expected_total = rows.obs["n_cells"].to_numpy() * rows.obs["library_size"].to_numpy()
    totals = pred.X.sum(axis=1)
    assert (totals <= expected_total * (1 + 1e-5)).all() and (totals > 0.5 * expected_total).all()
    # the per-signature log-scale correlation is high for both observed and predicted totals
    r = [np.corrcoef(np.log1p(a), np.log1p(b))[0, 1] for a, b in zip(pred.X, np.asarray(rows.X), strict=True)]
    assert np.median(r) > 0.8
    more = model.get_cell_type_signatures(signatures=rows[:3], n_cells=[10, 20, 30], library_size=100.0)
    np.testing.assert_allclose(more.obs["n_cells"], [10, 20, 30])
    assert (more.X.sum(axis=1) <= np.array([1000, 2000, 3000]) * (1 + 1e-5)).all()


def test_prediction_grid_and_latent_library(transferred):
    model, mdata, _, test_donors = transferred
    pred = model.get_cell_type_signatures(
        donors=test_donors[:4], tissues=["tissue_4", "tissue_1"], n_samples=1
    )
    assert pred.n_obs == 4 * 2 * len(model.cell_types)
    assert pred.obs_names[0] == f"{test_donors[0]}|tissue_4|{model.cell_types[0]}"
    assert set(pred.obs.columns) >= {"donor", "tissue", "cell_type", "n_cells", "library_size"}
    assert (pred.obs["n_cells"] == 1).all() and (pred.obs["library_size"] > 0).all()
    draws = model.get_cell_type_signatures(
        donors=test_donors[:4], tissues=["tissue_4"], n_samples=5, n_cells=50
    )
    assert np.all(draws.X >= 0)
    with pytest.raises(ValueError, match="Unknown cell types"):
        model.get_cell_type_signatures(donors=test_donors[:2], cell_types=["neuron"])
    with pytest.raises(ValueError, match="Unknown tissues"):
        model.get_cell_type_signatures(donors=test_donors[:2], tissues=["brain"])


def test_save_load_reproduces_signatures(transferred, tmp_path):
    model, mdata, _, test_donors = transferred
    kwargs = {"donors": test_donors[:5], "tissues": ["tissue_4"], "n_cells": 10, "library_size": 500.0}
    before = model.get_cell_type_signatures(**kwargs)
    model.save(tmp_path / "sig", overwrite=True)
    loaded = hyfa.HYFA.load(tmp_path / "sig", mdata)
    assert loaded.cell_types == model.cell_types
    after = loaded.get_cell_type_signatures(**kwargs)
    np.testing.assert_allclose(after.X, before.X, rtol=1e-5)
    pd.testing.assert_frame_equal(after.obs, before.obs)


def test_transfer_keeps_the_bulk_model_fixed_by_default(paired, transferred):
    model, mdata, _, _ = transferred
    donors = list(mdata.obs_names[:10])
    before = model.get_imputed_expression(target_tissues="tissue_1", donors=donors, library_size=1e4).X
    _, _, signatures, _ = paired
    model.train_cell_type_signatures(signatures[:200], max_epochs=1, enable_progress_bar=False)
    after = model.get_imputed_expression(target_tissues="tissue_1", donors=donors, library_size=1e4).X
    np.testing.assert_array_equal(after, before)


def test_bad_signature_input_is_rejected_before_training(paired, transferred):
    _, _, signatures, _ = paired
    model = transferred[0]
    bad = signatures[:20].copy()
    bad.X[0, 0] = 1.5
    with pytest.raises(ValueError, match="non-integer"):
        model.train_cell_type_signatures(bad, max_epochs=1)
    unknown = signatures[:20].copy()
    unknown.obs["donor"] = unknown.obs["donor"].astype(str)
    unknown.obs.loc[unknown.obs_names[0], "donor"] = "stranger"
    with pytest.raises(ValueError, match="stranger"):
        model.train_cell_type_signatures(unknown, max_epochs=1)
    missing = signatures[:20].copy()
    del missing.obs["n_cells"]
    with pytest.raises(KeyError, match="n_cells"):
        model.train_cell_type_signatures(missing, max_epochs=1)


def test_bulk_offset_maps_signature_genes_to_bulk_genes(paired, transferred):
    _, _, signatures, _ = paired
    model = transferred[0]
    index = model.signature_setup_["head"]["bulk_gene_index"]  # on by default for a count bulk model
    assert len(index) == signatures.n_vars
    for gene, position in zip(signatures.var_names, index, strict=True):
        assert (model.genes[position] == gene) if position >= 0 else (gene not in model.genes)
    assert 0 < sum(p >= 0 for p in index) < signatures.n_vars  # simulate_single_cell: partial overlap
    renamed = signatures[:20].copy()
    renamed.var_names = [f"new_{i}" for i in range(renamed.n_vars)]
    with pytest.raises(ValueError, match="no signature gene is a gene of the bulk model"):
        model.train_cell_type_signatures(renamed, bulk_offset=True, max_epochs=1)


def test_bulk_offset_needs_a_count_bulk_model(paired):
    observed, _, signatures, _ = paired
    mdata = observed.copy()
    hyfa.HYFA.setup_mudata(mdata)
    model = hyfa.HYFA(mdata, gene_likelihood="normal", **TINY)
    model.train(max_epochs=1, batch_size=64, enable_progress_bar=False)
    with pytest.raises(ValueError, match="bulk_offset needs a bulk model of counts"):
        model.train_cell_type_signatures(signatures[:40], bulk_offset=True, max_epochs=1)
    model.train_cell_type_signatures(signatures[:40], max_epochs=1, enable_progress_bar=False)
    assert model.signature_setup_["head"]["bulk_gene_index"] is None  # default: no offset for normalized bulk
    pred = model.get_cell_type_signatures(donors=list(signatures.obs["donor"][:2]), tissues=["tissue_0"])
    assert np.isfinite(pred.X).all()


def test_bulk_offset_carries_the_bulk_profile_into_the_signature():
    import torch

    from hyfa.nn import CellTypeSignatureHead

    head = CellTypeSignatureHead(
        n_cell_types=2, n_genes=4, n_donor_latent=3, n_tissue_latent=2, n_metagene_latent=2,
        n_metagenes=2, n_factors=2, n_cell_type_latent=2, dropout_rate=0.0, bulk_gene_index=[2, -1, 0, 1],
    )  # fmt: skip
    with torch.no_grad():  # logits W_s e_hat + b_s = 0: the signature is the offset alone
        head.decoder.proportions.weight.zero_()
        head.decoder.proportions.bias.zero_()
    bulk = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    params = head(torch.randn(2, 3), torch.randn(2, 2), torch.tensor([0, 1]), torch.randn(2, 2), bulk)
    p = params["proportions"]
    shared = [0, 2, 3]  # signature genes 0, 2, 3 are bulk genes 2, 0, 1
    torch.testing.assert_close(p[:, shared] / p[:, shared].sum(1, keepdim=True), bulk[:, [2, 0, 1]])
    # the gene without a bulk counterpart sits at the geometric mean of the shared ones
    geometric = torch.exp(torch.log(p[:, shared]).mean(1))
    torch.testing.assert_close(p[:, 1], geometric)
    with pytest.raises(ValueError, match="pass bulk_proportions"):
        head(torch.randn(2, 3), torch.randn(2, 2), torch.tensor([0, 1]), torch.randn(2, 2))


def _bulk_flags(model):
    return [p.requires_grad for p in model.module.parameters()]


@pytest.mark.parametrize("freeze_pretrained", [True, False])
def test_failed_transfer_leaves_the_model_as_it_was(paired, transferred, monkeypatch, freeze_pretrained):
    from hyfa.module import CellTypeSignatureModule
    from hyfa.nn import CellTypeSignatureHead

    _, _, signatures, _ = paired
    model, mdata, _, test_donors = transferred
    setup, history = model.signature_setup_, model.signature_history_
    flags = _bulk_flags(model)
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    kwargs = {"donors": test_donors[:3], "tissues": ["tissue_4"], "n_cells": 10, "library_size": 500.0}
    before = model.get_cell_type_signatures(**kwargs).X

    def fail_after_a_step(self, tensors, inference_outputs, generative_outputs):
        out = original(self, tensors, inference_outputs, generative_outputs)
        calls.append(1)
        if len(calls) > 2:  # after optimizer steps, fine-tuning has moved the bulk parameters
            raise RuntimeError("forced failure mid-run")
        return out

    original, calls = CellTypeSignatureModule.loss, []
    monkeypatch.setattr(CellTypeSignatureModule, "loss", fail_after_a_step)
    with pytest.raises(RuntimeError, match="forced failure"):
        model.train_cell_type_signatures(
            signatures[:200], max_epochs=2, batch_size=16, freeze_pretrained=freeze_pretrained,
            enable_progress_bar=False,
        )  # fmt: skip
    assert len(calls) > 2
    assert _bulk_flags(model) == flags and all(flags)  # trainable again, as before the run
    assert not model.module.training
    assert model.signature_setup_ is setup and model.signature_history_ is history
    assert not any(isinstance(m, CellTypeSignatureHead) for m in model.module.modules())  # no head attached
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    np.testing.assert_array_equal(model.get_cell_type_signatures(**kwargs).X, before)


def test_custom_column_names(paired, transferred):
    _, _, signatures, _ = paired
    model, mdata, _, _ = transferred
    names = {
        "donor": "individual",
        "tissue": "organ",
        "cell_type": "label",
        "n_cells": "cells",
        "library_size": "depth",
    }
    renamed = signatures[:120].copy()
    renamed.obs = renamed.obs.rename(columns=names)
    scvi.settings.seed = 0
    model.train_cell_type_signatures(
        renamed, donor_key="individual", tissue_key="organ", cell_type_key="label", n_cells_key="cells",
        library_size_key="depth", max_epochs=2, enable_progress_bar=False,
    )  # fmt: skip
    assert model.signature_setup_["keys"] == names
    pred = model.get_cell_type_signatures(signatures=renamed)  # read by the names given at training
    assert list(pred.obs_names) == list(renamed.obs_names)
    np.testing.assert_array_equal(pred.obs["donor"].astype(str), renamed.obs["individual"].astype(str))
    np.testing.assert_array_equal(pred.obs["cell_type"].astype(str), renamed.obs["label"].astype(str))
    np.testing.assert_allclose(pred.obs["n_cells"], renamed.obs["cells"])
    np.testing.assert_allclose(pred.obs["library_size"], renamed.obs["depth"], rtol=1e-6)
    with pytest.raises(KeyError, match="individual"):
        model.get_cell_type_signatures(signatures=signatures[:5])  # default names are not the recorded ones


def test_bulk_module_does_not_import_signatures():
    """The import runs one way: module/_signatures.py imports module/_module.py, never the reverse."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import hyfa.module._module as bulk_file

    tree = ast.parse(Path(bulk_file.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert not [name for name in imported if "signature" in name]
    assert not hasattr(bulk_file.HYFAModule, "attach_signature_head")
    code = (  # load the bulk module file without the package __init__ files that import everything
        "import sys, types, importlib, pathlib\n"
        f"root = pathlib.Path({str(Path(bulk_file.__file__).parents[1])!r})\n"
        "for name, path in (('hyfa', root), ('hyfa.module', root / 'module')):\n"
        "    package = types.ModuleType(name); package.__path__ = [str(path)]; sys.modules[name] = package\n"
        "importlib.import_module('hyfa.module._module')\n"
        "print(sorted(m for m in sys.modules if m.startswith('hyfa.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "hyfa.module._module" in out and "hyfa.module._signatures" not in out, out
