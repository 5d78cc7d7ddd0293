"""The module implements the paper's equations with the decisions of the Foundation issue."""

import numpy as np
import pytest
import torch
from hyfa_testing import TINY

from hyfa.module import HYFAModule, fixed_split, random_split, split_sources_targets
from hyfa.nn import HypergraphAttentionConv, MetageneEncoder


def _module(**kwargs):
    torch.manual_seed(0)
    return HYFAModule(n_genes=5, n_tissues=4, **{**TINY, **kwargs})


def test_each_graph_layer_has_its_own_parameters():
    module = _module(n_graph_layers=3)
    layers = module.graph_layers
    assert len(layers) == 3
    pointers = [{p.data_ptr() for p in layer.parameters()} for layer in layers]
    assert not (pointers[0] & pointers[1]) and not (pointers[1] & pointers[2])
    with torch.no_grad():
        layers[0].message_output.weight.add_(1.0)
    assert not torch.equal(layers[0].message_output.weight, layers[1].message_output.weight)


def _layer_inputs(n_donors=3, n_tissues=4, n_metagenes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_donor = torch.tensor([0, 0, 1, 2, 2, 2])
    edge_tissue = torch.tensor([0, 3, 1, 0, 1, 2])
    return {
        "h_donor": torch.randn(n_donors, TINY["n_donor_latent"], generator=g),
        "h_tissue": torch.randn(n_tissues, TINY["n_tissue_latent"], generator=g),
        "h_metagene": torch.randn(n_metagenes, TINY["n_metagene_latent"], generator=g),
        "edge_attr": torch.randn(len(edge_donor), n_metagenes, TINY["n_factors"], generator=g),
        "edge_donor": edge_donor,
        "edge_tissue": edge_tissue,
    }


def _layer(residual=True, norm="batch"):
    torch.manual_seed(0)
    return HypergraphAttentionConv(
        TINY["n_donor_latent"],
        TINY["n_tissue_latent"],
        TINY["n_metagene_latent"],
        TINY["n_factors"],
        n_heads=3,
        n_head_dim=5,
        dropout_rate=0.0,
        residual=residual,
        norm=norm,
    ).eval()


@pytest.mark.parametrize("residual", [True, False])
def test_update_is_residual_or_the_papers(residual):
    layer = _layer(residual=residual)
    inputs = _layer_inputs()
    with torch.no_grad():
        layer.update.output.weight.zero_()
        layer.update.output.bias.fill_(0.5)
        out = layer(**inputs)
    expected = inputs["h_donor"] + 0.5 if residual else torch.full_like(inputs["h_donor"], 0.5)
    torch.testing.assert_close(out, expected)


def test_attention_aggregation_equals_the_per_hyperedge_formula():
    """m_i = sum_{j,k in T(i)} alpha_jk * phi_e(...) with alpha normalized over all of i's hyperedges."""
    layer = _layer()
    x = _layer_inputs()
    with torch.no_grad():
        hidden = layer.message_activations(**x)  # (P, M, K)
        messages = layer.message_output(hidden)  # (P, M, H*D): phi_e for every hyperedge
        logits = layer.attention_logits(x["h_tissue"], x["h_metagene"])[x["edge_tissue"]]  # (P, M, H)
        n_donors, heads, dim = x["h_donor"].shape[0], 3, 5
        expected = torch.zeros(n_donors, heads * dim)
        for i in range(n_donors):
            rows = x["edge_donor"] == i
            alpha = torch.softmax(logits[rows].reshape(-1, heads), dim=0)  # over |T(i)| x M hyperedges
            msg = messages[rows].reshape(-1, heads, dim)
            expected[i] = (alpha[:, :, None] * msg).sum(0).reshape(-1)
        got_update = layer.update(torch.cat([x["h_donor"], expected], dim=1)) + x["h_donor"]
        torch.testing.assert_close(layer(**x), got_update, rtol=1e-4, atol=1e-5)


def test_encoder_applies_relu_and_shapes_hyperedges():
    enc = MetageneEncoder(7, n_metagenes=3, n_factors=4)
    out = enc(torch.randn(10, 7))
    assert out.shape == (10, 3, 4) and (out >= 0).all() and (out == 0).any()
    linear = MetageneEncoder(7, 3, 4, activation=None)
    assert (linear(torch.randn(10, 7)) < 0).any()


def test_sources_and_targets_partition_the_observed_tissues():
    torch.manual_seed(0)
    observed = torch.rand(500, 6) < 0.6
    observed[:, 0] = True
    source, target = random_split(observed)
    assert not (source & target).any()
    assert torch.equal(source | target, observed)
    n = observed.sum(1)
    k = source.sum(1)
    assert (k >= 1).all()
    assert ((k <= n - 1) | (n == 1)).all()
    assert (target.sum(1)[n >= 2] >= 1).all()


def test_k_is_uniform_and_drawn_per_donor_per_draw():
    torch.manual_seed(1)
    observed = torch.ones(4000, 5, dtype=torch.bool)  # n = 5 -> k uniform on {1, 2, 3, 4}
    k1 = random_split(observed)[0].sum(1)
    k2 = random_split(observed)[0].sum(1)
    counts = torch.bincount(k1, minlength=5)[1:].float() / len(k1)
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.03, rtol=0)
    assert (k1 != k2).float().mean() > 0.6  # redrawn each time a donor is drawn
    assert len(torch.unique(k1[:20])) > 1  # differs between donors of one batch
    # which tissues are sources is uniform too
    per_tissue = random_split(observed)[0].float().mean(0)
    torch.testing.assert_close(per_tissue, torch.full((5,), 2.5 / 5), atol=0.03, rtol=0)


def test_source_count_exponent_favours_few_sources():
    torch.manual_seed(2)
    observed = torch.ones(20000, 18, dtype=torch.bool)  # n = 18: k = 1 + floor(17 u ** exponent)
    for exponent in (1.0, 3.0):
        k = random_split(observed, exponent=exponent)[0].sum(1)
        expected = torch.tensor(
            [(min(j / 17, 1.0)) ** (1 / exponent) - ((j - 1) / 17) ** (1 / exponent) for j in range(1, 18)]
        )
        observed_freq = torch.bincount(k, minlength=18)[1:].float() / len(k)
        torch.testing.assert_close(observed_freq, expected.float(), atol=0.01, rtol=0)
        assert k.min() >= 1 and k.max() <= 17
    # exponent 3 makes one source ~39% of draws (paper's uniform k: 1/17)
    k = random_split(observed, exponent=3.0)[0].sum(1)
    assert abs((k == 1).float().mean().item() - (1 / 17) ** (1 / 3)) < 0.01
    s1, _ = fixed_split(observed[:2000], torch.arange(2000), seed=0, exponent=3.0)
    s0, _ = fixed_split(observed[:2000], torch.arange(2000), seed=0, exponent=1.0)
    assert (s1.sum(1) <= s0.sum(1)).all() and (s1.sum(1) == 1).float().mean() > 0.3


def test_module_uses_its_source_count_exponent():
    module = HYFAModule(n_genes=3, n_tissues=18, source_count_exponent=5.0)
    tensors = {
        "X": torch.zeros(4000, 54),
        "observed": torch.ones(4000, 18),
        "ind_x": torch.arange(4000)[:, None],
    }
    module.train()
    share_single = (module._get_inference_input(tensors)["source_mask"].sum(1) == 1).float().mean()
    assert abs(share_single.item() - (1 / 17) ** (1 / 5)) < 0.03
    module.eval()
    share_single = (module._get_inference_input(tensors)["source_mask"].sum(1) == 1).float().mean()
    assert abs(share_single.item() - (1 / 17) ** (1 / 5)) < 0.03


def test_fixed_split_depends_on_donor_index_only():
    observed = torch.rand(50, 7) < 0.7
    observed[:, :2] = True
    idx = torch.arange(100, 150)
    s1, t1 = fixed_split(observed, idx, seed=3)
    perm = torch.randperm(50)
    s2, t2 = fixed_split(observed[perm], idx[perm], seed=3)
    assert torch.equal(s1[perm], s2) and torch.equal(t1[perm], t2)
    s3, _ = fixed_split(observed, idx, seed=4)
    assert not torch.equal(s1, s3)


def test_split_handles_single_tissue_donors():
    observed = torch.tensor([[True, False, False], [True, True, False]])
    source, target = split_sources_targets(observed, torch.rand(2, 3), torch.tensor([0.99, 0.99]))
    assert source[0].tolist() == [True, False, False] and not target[0].any()
    assert source[1].sum() == 1 and target[1].sum() == 1


def test_covariates_fill_the_first_donor_dimensions():
    module = _module(n_cats_per_cov=[2, 3], n_continuous_cov=1)
    h = module.initial_donor(2, torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.3], [0.7]]))
    torch.testing.assert_close(h[0, :6], torch.tensor([0, 1, 0, 0, 1, 0.3]))
    torch.testing.assert_close(h[1, :6], torch.tensor([1, 0, 1, 0, 0, 0.7]))
    assert (h[:, 6:] == 1).all()
    assert (_module().initial_donor(3) == 1).all()
    with pytest.raises(ValueError, match="n_donor_latent"):
        _module(n_cats_per_cov=[20], n_continuous_cov=0)


def test_donor_prediction_does_not_depend_on_other_donors_in_eval_mode():
    module = _module().eval()
    x = torch.randn(6, 4 * 5)
    mask = torch.rand(6, 4) < 0.7
    mask[:, 0] = True
    with torch.no_grad():
        full = module.inference(x, mask)["donor"]
        part = module.inference(x[2:4], mask[2:4])["donor"]
    torch.testing.assert_close(full[2:4], part)


def test_loss_is_mean_over_donors_of_mean_target_nll():
    module = _module(dropout_rate=0.0).eval()
    x = torch.randn(3, 4 * 5)
    observed = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.float32)
    tensors = {"X": x, "observed": observed, "ind_x": torch.arange(3)[:, None]}
    inference_outputs, generative_outputs, loss = module(tensors)
    target = inference_outputs["target_mask"]
    rows, tissues = target.nonzero(as_tuple=True)
    nll = -generative_outputs["px"].log_prob(x.view(3, 4, 5)[rows, tissues]).mean(1)
    per_donor = [nll[rows == i].mean() for i in range(3) if (rows == i).any()]
    assert len(per_donor) == 2  # the single-tissue donor has no target
    torch.testing.assert_close(loss.loss, torch.stack(per_donor).mean())
    assert np.isfinite(loss.loss.item())
