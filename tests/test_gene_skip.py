"""The gene-level skip connection: its arithmetic, its place in every prediction path, and what it learns."""

import logging

import numpy as np
import pytest
import scvi
import torch
from hyfa_testing import TINY

import hyfa
from hyfa._constants import REGISTRY_KEYS
from hyfa.module import HYFAModule
from hyfa.nn import GeneSkip


def test_offset_is_the_shrunken_weighted_mean_of_the_sources_times_the_gene_weight():
    torch.manual_seed(0)
    skip = GeneSkip(n_tissues=4, n_genes=5)
    with torch.no_grad():
        skip.source_logits.normal_()
        skip.weight.normal_()
    values = torch.randn(3, 4, 5)
    donor_row = torch.tensor([0, 2, 2, 1])
    tissue_index = torch.tensor([1, 0, 3, 2])
    source_mask = torch.tensor(
        [[True, False, True, False], [False, True, False, True], [True, True, False, False], [False] * 4]
    )
    got = skip(values, donor_row, source_mask, tissue_index).detach().numpy()
    logits, weight, v = skip.source_logits.detach().numpy(), skip.coefficient.detach().numpy(), values.numpy()
    for p in range(4):
        sources = np.flatnonzero(source_mask[p].numpy())
        if len(sources) == 0:  # no source: no offset
            np.testing.assert_array_equal(got[p], 0.0)
            continue
        a = np.log1p(np.exp(logits[tissue_index[p], sources]))  # softplus precisions
        a /= 1.0 + a.sum()
        expected = weight[tissue_index[p]] * (a[:, None] * v[donor_row[p], sources]).sum(axis=0)
        np.testing.assert_allclose(got[p], expected, rtol=1e-5, atol=1e-6)


def test_gradients_reach_both_parameters():
    skip = GeneSkip(n_tissues=3, n_genes=4)
    with torch.no_grad():
        skip.weight.fill_(0.5)
    values = torch.randn(2, 3, 4)
    out = skip(
        values,
        torch.tensor([0, 1]),
        torch.tensor([[True, True, False], [True, False, True]]),
        torch.tensor([2, 1]),
    )
    out.square().sum().backward()
    assert skip.weight.grad.abs().sum() > 0
    assert skip.source_logits.grad.abs().sum() > 0


def test_coefficients_are_non_negative_and_training_projects_them():
    torch.manual_seed(0)
    skip = GeneSkip(n_tissues=2, n_genes=2)
    values = torch.randn(200, 2, 2)
    rows, tissue = torch.arange(200), torch.ones(200, dtype=torch.long)
    source = torch.tensor([[True, False]] * 200)
    with torch.no_grad():  # a negative stored weight reads as 0, and eval leaves it stored
        skip.weight.copy_(torch.tensor([[0.1, -0.1], [-0.2, 0.3]]))
    skip.eval()
    torch.testing.assert_close(skip.coefficient, skip.gain * torch.tensor([[0.1, 0.0], [0.0, 0.3]]))
    out = skip(values, rows, source, tissue)
    torch.testing.assert_close(out[:, 0], torch.zeros(200))  # gene 0 of tissue 1: w = 0
    assert skip.weight[1, 0] < 0
    # training: gene 0 of the target follows its source, gene 1 goes against it
    skip.train()
    target = torch.stack([values[:, 0, 0], -values[:, 0, 1]], dim=1)
    optimizer = torch.optim.Adam(skip.parameters(), lr=0.02)
    for _ in range(300):
        optimizer.zero_grad()
        (skip(values, rows, source, tissue) - target).square().mean().backward()
        optimizer.step()
        skip(values[:1], rows[:1], source[:1], tissue[:1])  # the next forward projects
        assert (skip.weight >= 0).all()
    coefficient = skip.coefficient[1].detach()
    assert coefficient[1] == 0  # the anti-correlated gene gets no skip rather than a flipped one
    assert coefficient[0] * skip.source_weights(source[:1], tissue[:1])[0, 0] > 0.8  # ~1: the source itself


@pytest.fixture
def trained_skip(unpaired):
    """A tiny HYFA with the gene skip, trained 3 epochs, then given random skip parameters."""
    mdata, _, _ = unpaired
    hyfa.HYFA.setup_mudata(mdata)
    scvi.settings.seed = 0
    model = hyfa.HYFA(mdata, gene_skip=True, **TINY)
    model.train(max_epochs=3, batch_size=16)
    with torch.no_grad():  # large enough to change every prediction
        model.module.skip.source_logits.normal_()
        model.module.skip.weight.normal_(std=0.1).abs_()  # coefficients are non-negative
    return model, mdata


def test_imputation_equals_the_training_path_with_the_skip(trained_skip):
    model, mdata = trained_skip
    model.fold_models_ = None  # the training path is the trained model's own (ensembles: test_ensemble.py)
    tensors = next(iter(model._make_data_loader(mdata, batch_size=mdata.n_obs)))
    x = tensors[REGISTRY_KEYS.X_KEY]
    observed = tensors[REGISTRY_KEYS.OBSERVED_KEY] > 0
    names = mdata.obs_names[tensors[REGISTRY_KEYS.INDICES_KEY].ravel().long().numpy()]
    with pytest.warns(UserWarning, match="Skipping"):
        everything = model.get_imputed_expression(batch_size=7)
    model.module.eval()
    for t, target in enumerate(model.tissues):
        source = observed.clone()
        source[:, t] = False
        keep = source.any(dim=1)
        rows = torch.arange(int(keep.sum()))
        with torch.no_grad():
            h = model.module.inference(x=x[keep], source_mask=source[keep])["donor"]
            tissue = torch.full((len(rows),), t)
            offset = model.module.gene_offset(x[keep], rows, source[keep], tissue)
            with_skip = model.module.generative(h, tissue, gene_offset=offset)["px"].mean.numpy()
            without = model.module.generative(h, tissue)["px"].mean.numpy()
        reference = dict(zip(names[keep.numpy()], with_skip, strict=True))
        joint = everything[target]
        assert set(reference) == set(joint.obs_names)
        expected = np.stack([reference[d] for d in joint.obs_names])
        np.testing.assert_allclose(joint.X, expected, rtol=1e-4, atol=1e-5)
        assert np.abs(with_skip - without).max() > 1e-2  # the skip does change the predictions


@pytest.mark.filterwarnings("ignore:Skipping")
def test_saved_skip_round_trips(trained_skip, tmp_path):
    model, mdata = trained_skip
    before = model.get_imputed_expression(target_tissues="tissue_1", source_tissues=["tissue_0"])
    model.save(tmp_path / "m")
    loaded = hyfa.HYFA.load(tmp_path / "m", adata=mdata)
    assert loaded.module.skip is not None
    after = loaded.get_imputed_expression(target_tissues="tissue_1", source_tissues=["tissue_0"])
    np.testing.assert_allclose(after.X, before.X, rtol=1e-6, atol=1e-6)


def test_a_state_dict_without_the_skip_loads_as_a_zero_skip():
    torch.manual_seed(0)
    kwargs = dict(n_genes=6, n_tissues=3, **TINY)
    plain = HYFAModule(**kwargs).eval()
    with_skip = HYFAModule(gene_skip=True, **kwargs).eval()
    with torch.no_grad():
        with_skip.skip.weight.fill_(1.0)
    with_skip.load_state_dict(plain.state_dict())
    assert torch.equal(with_skip.skip.weight, torch.zeros(3, 6))
    x = torch.randn(5, 18)
    mask = torch.tensor([[True, False, False]] * 5)
    rows, tissue = torch.arange(5), torch.full((5,), 2)
    offset = with_skip.gene_offset(x, rows, mask, tissue)
    h_plain = plain.embed_source_sets(x, rows, mask)
    h_skip = with_skip.embed_source_sets(x, rows, mask)
    torch.testing.assert_close(
        with_skip.predict(h_skip, tissue, gene_offset=offset)["mean"], plain.predict(h_plain, tissue)["mean"]
    )


def _per_gene_r(pred, obs):
    return float(np.mean([np.corrcoef(pred[:, g], obs[:, g])[0, 1] for g in range(obs.shape[1])]))


def test_the_skip_carries_gene_specific_donor_signal_the_metagenes_lose():
    """Donor x gene effects shared by all tissues: only the skip can pass them from source to target."""
    scvi.settings.verbosity = logging.WARNING
    n_donors, n_genes = 120, 120
    mdata, _ = hyfa.data.simulate(
        n_donors=n_donors, n_tissues=3, n_genes=n_genes, missing_rate=0.0, shared_gene_sd=0.6, seed=0
    )
    mdata.obs["split"] = np.where(np.arange(n_donors) < 90, "train", "test")
    test = list(mdata.obs_names[90:])
    source, target = list(mdata.mod)[:2]
    observed = mdata.mod[target][test].X
    scores, threads = {}, torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is as fast, and immune to busy shared cores
    try:
        for gene_skip in (False, True):
            hyfa.HYFA.setup_mudata(mdata)
            scvi.settings.seed = 0
            model = hyfa.HYFA(mdata, gene_skip=gene_skip, **hyfa.preset("quick").model)
            model.train(  # the architecture alone: no calibration (tested in test_calibration.py)
                max_epochs=80,
                split_key="split",
                lr=2e-3,
                batch_size=32,
                calibrate=False,
                enable_progress_bar=False,
            )
            pred = model.get_imputed_expression(target_tissues=target, source_tissues=[source], donors=test)
            scores[gene_skip] = _per_gene_r(pred.X, observed)
    finally:
        torch.set_num_threads(threads)
    surrogate = _per_gene_r(mdata.mod[source][test].X, observed)
    # without the skip the per-gene r stays near 0 (the tissues' low-rank parts differ); with it,
    # HYFA gets most of what the source's own gene values carry
    assert scores[True] > scores[False] + 0.2, scores
    assert scores[True] > 0.8 * surrogate, (scores, surrogate)


def test_count_likelihoods_add_the_offset_to_the_proportion_logits():
    torch.manual_seed(0)
    module = HYFAModule(n_genes=6, n_tissues=3, gene_likelihood="nb", gene_skip=True, **TINY).eval()
    donor, tissue = torch.randn(4, TINY["n_donor_latent"]), torch.tensor([0, 1, 2, 1])
    offset = torch.randn(4, 6)
    with torch.no_grad():
        plain = module.generative(donor, tissue)["proportions"]
        shifted = module.generative(donor, tissue, gene_offset=offset)["proportions"]
    expected = torch.softmax(torch.log(plain) + offset, dim=-1)
    torch.testing.assert_close(shifted, expected, rtol=1e-4, atol=1e-6)
