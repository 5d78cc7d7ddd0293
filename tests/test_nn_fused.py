"""The fast paths of ``hyfa.nn`` compute the same functions as the layer-by-layer formulas they replace."""

import pytest
import torch
from torch import nn

from hyfa.nn import MLP, HyperedgePredictor, HypergraphAttentionConv, MetageneEncoder, hidden_block
from hyfa.nn import _kernels as kernels
from hyfa.nn import _padding as padding
from hyfa.nn._dropout import DROPOUT_LEVELS, dropout_mask, dropout_scale
from hyfa.nn._hypergraph_conv import tissue_attention
from hyfa.nn._kernels import fused_hidden

#: (x shape or None, row bias rows or None, column bias rows or None) of the three uses of the fused block.
CASES = {
    "linear layer": ((7, 1, 5), None, 1),
    "hyperedges": ((6, 4, 5), 6, 4),
    "biases only": (None, 6, 4),
}


def reference_hidden(x, weight, row_bias, column_bias, dropout: nn.Module) -> torch.Tensor:
    """Return ``fused_hidden``'s function layer by layer with ``dropout`` (the formula it replaces)."""
    pre = 0
    if x is not None:
        pre = x @ weight.T
    if row_bias is not None:
        pre = pre + row_bias[:, None, :]
    if column_bias is not None:
        pre = pre + column_bias[None, :, :]
    return dropout(nn.functional.silu(pre))


def segment_softmax(logits: torch.Tensor, segment: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Softmax of ``logits`` ``(n_pairs, n_metagenes, n_heads)`` over all entries of each segment, per head.

    Row ``p`` belongs to segment ``segment[p]`` (its donor): each head's weights sum to one over
    the donor's ``|T(i)| x M`` incoming hyperedges (the formula ``tissue_attention`` replaces).
    """
    n_heads = logits.shape[-1]
    pair_max = logits.detach().amax(dim=1)
    seg_max = torch.full((n_segments, n_heads), -torch.inf, dtype=logits.dtype, device=logits.device)
    seg_max = seg_max.scatter_reduce(0, segment[:, None].expand(-1, n_heads), pair_max, reduce="amax")
    weights = torch.exp(logits - seg_max[segment][:, None, :])
    total = torch.zeros(n_segments, n_heads, dtype=logits.dtype, device=logits.device)
    total = total.index_add(0, segment, weights.sum(dim=1))
    return weights / total[segment][:, None, :]


def _inputs(case, n_out=9, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_shape, n_rows, n_columns = CASES[case]

    def leaf(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()

    x = leaf(*x_shape) if x_shape else None
    weight = leaf(n_out, x_shape[-1]) if x_shape else None
    return x, weight, leaf(n_rows, n_out) if n_rows else None, leaf(n_columns, n_out) if n_columns else None


def _grads(output, tensors, seed=1):
    upstream = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=output.dtype)
    present = [t for t in tensors if t is not None]
    return torch.autograd.grad(output, present, upstream)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_hidden_equals_the_layers_without_dropout(case):
    inputs = _inputs(case)
    fused = fused_hidden(*inputs)
    reference = reference_hidden(*inputs, nn.Identity())
    torch.testing.assert_close(fused, reference)
    for got, expected in zip(_grads(fused, inputs), _grads(reference, inputs), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_hidden_gradcheck(case):
    inputs = _inputs(case)
    present = [i for i, t in enumerate(inputs) if t is not None]

    def function(*tensors):
        args = list(inputs)
        for i, t in zip(present, tensors, strict=True):
            args[i] = t
        return fused_hidden(*args)

    assert torch.autograd.gradcheck(function, [inputs[i] for i in present])


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("scale_output", [True, False])
def test_fused_dropout_is_silu_then_the_drawn_mask(case, scale_output):
    inputs = _inputs(case)
    p = 0.3
    torch.manual_seed(5)
    fused = fused_hidden(*inputs, dropout_rate=p, scale_output=scale_output)
    torch.manual_seed(5)
    dropped = dropout_mask(fused.shape, p)
    scale = dropout_scale(p) if scale_output else 1.0
    reference = reference_hidden(*inputs, lambda h: h * ~dropped * scale)
    assert (fused[dropped] == 0).all()
    torch.testing.assert_close(fused, reference)
    for got, expected in zip(_grads(fused, inputs), _grads(reference, inputs), strict=True):
        torch.testing.assert_close(got, expected)


def test_dropped_units_have_exactly_zero_output_and_gradient_in_low_precision():
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        pre = (torch.randn(1000) * 50).to(dtype)
        pre[::7] = 3e4  # dropout is exact whatever the pre-activation
        pre.requires_grad_()
        torch.manual_seed(0)
        out = fused_hidden(None, None, pre[:, None], torch.zeros(1, 1, dtype=dtype), dropout_rate=0.5)
        out.sum().backward()
        torch.manual_seed(0)
        dropped = dropout_mask((1000, 1, 1), 0.5).ravel()
        assert (out.ravel()[dropped] == 0).all() and (pre.grad[dropped] == 0).all()
        assert (out.ravel()[~dropped] != 0).any()


def test_dropout_mask_rate_and_independence():
    torch.manual_seed(0)
    p = 0.174
    mask = dropout_mask((2000, 1000), p)
    expected = round(p * DROPOUT_LEVELS) / DROPOUT_LEVELS
    assert abs(expected - p) < 1 / DROPOUT_LEVELS
    assert abs(mask.float().mean().item() - expected) < 0.002
    # each of the four 16-bit lanes of a 64-bit draw, and neighbouring units, drop independently
    lanes = mask.reshape(-1, 4).float().mean(0)
    torch.testing.assert_close(lanes, torch.full((4,), expected), atol=0.003, rtol=0)
    flat = mask.reshape(-1).float()
    both = (flat[:-1] * flat[1:]).mean().item()
    assert abs(both - expected**2) < 0.002
    assert dropout_scale(p) == pytest.approx(1 / (1 - expected))
    assert not dropout_mask((100,), 0.0).any() and dropout_mask((100,), 1.0).all()


def test_dropout_mask_follows_the_torch_seed():
    torch.manual_seed(3)
    a = dropout_mask((50, 7), 0.4)
    torch.manual_seed(3)
    assert torch.equal(a, dropout_mask((50, 7), 0.4))
    assert not torch.equal(a, dropout_mask((50, 7), 0.4))


@pytest.mark.parametrize("norm", [None, "layer", "batch"])
def test_blocks_keep_the_unfused_layout_and_function(norm):
    torch.manual_seed(0)
    mlp = MLP(5, [6, 7], 3, dropout_rate=0.2, norm=norm).eval()
    unfused = nn.Sequential(*(nn.Sequential(*block) for block in mlp.hidden), mlp.output).eval()
    keys = set(mlp.state_dict())
    assert {"hidden.0.0.weight", "hidden.0.0.bias", "hidden.1.0.weight", "output.weight"} <= keys
    assert ("hidden.0.3.weight" in keys) == (norm is not None)
    x = torch.randn(11, 5)
    torch.testing.assert_close(mlp(x), unfused(x))
    block = hidden_block(5, 6, 0.2, norm).eval()
    torch.testing.assert_close(block(x), nn.Sequential(*block)(x))


def test_blocks_in_training_mode_drop_at_their_rate():
    torch.manual_seed(0)
    block = hidden_block(5, 4000, 0.25).train()
    with torch.no_grad():
        block[0].bias.fill_(3.0)  # every unit active before dropout
        out = block(torch.zeros(50, 5))
    assert (out == 0).float().mean().item() == pytest.approx(0.25, abs=0.01)
    torch.testing.assert_close(
        out[out != 0],
        torch.full_like(out[out != 0], nn.functional.silu(torch.tensor(3.0)) / 0.75),
        rtol=1e-4,
        atol=0,
    )


def _silu_dropout(pre, rate):
    """SiLU then dropout with the mask :func:`dropout_mask` draws next, layer by layer."""
    dropped = dropout_mask(pre.shape, rate).view(pre.shape)
    return nn.functional.silu(pre) * ~dropped * dropout_scale(rate)


def test_mlp_in_training_mode_equals_the_layers_with_the_drawn_masks():
    torch.manual_seed(0)
    mlp = MLP(5, [6, 7], 3, dropout_rate=0.3).train()
    x = torch.randn(11, 5)
    torch.manual_seed(2)
    got = mlp(x)
    torch.manual_seed(2)
    hidden = x
    for block in mlp.hidden:
        hidden = _silu_dropout(block[0](hidden), 0.3)
    torch.testing.assert_close(got, mlp.output(hidden))


def test_predictor_in_training_mode_equals_the_concatenation_mlp():
    torch.manual_seed(0)
    predictor = HyperedgePredictor([4, 3], 2, 5, n_layers=2, dropout_rate=0.3).train()
    donor, tissue, metagene = torch.randn(6, 4), torch.randn(6, 3), torch.randn(8, 2)
    torch.manual_seed(2)
    got = predictor([donor, tissue], metagene)
    torch.manual_seed(2)
    inputs = torch.cat(
        [
            donor[:, None].expand(-1, 8, -1),
            tissue[:, None].expand(-1, 8, -1),
            metagene[None].expand(6, -1, -1),
        ],
        -1,
    )
    weight = torch.cat([part.weight for part in predictor.first.parts], dim=1)
    hidden = _silu_dropout(inputs @ weight.T + predictor.first.bias, 0.3).reshape(48, -1)
    for block in predictor.rest.hidden:
        hidden = _silu_dropout(block[0](hidden), 0.3)
    torch.testing.assert_close(got, predictor.rest.output(hidden).view(6, 8, 5))


@pytest.mark.parametrize("module", ["mlp", "predictor"])
def test_padding_hidden_units_does_not_change_the_function(module, monkeypatch):
    torch.manual_seed(0)
    if module == "mlp":
        net = MLP(5, [7, 9], 3, dropout_rate=0.3).eval()
        inputs = (torch.randn(11, 5),)
    else:
        net = HyperedgePredictor([4, 3], 2, 5, n_layers=3, dropout_rate=0.3).eval()
        inputs = ([torch.randn(6, 4), torch.randn(6, 3)], torch.randn(8, 2))
    expected = net(*inputs)
    expected_grads = torch.autograd.grad(expected.square().sum(), list(net.parameters()))
    monkeypatch.setattr(padding, "PAD_MIN_ROWS", 0)  # 7, 9 and 9 hidden units become 16
    got = net(*inputs)
    torch.testing.assert_close(got, expected)
    for a, b in zip(
        torch.autograd.grad(got.square().sum(), list(net.parameters())), expected_grads, strict=True
    ):
        torch.testing.assert_close(a, b)
    net.train()  # dropout of the padded units leaves them zero
    assert torch.isfinite(net(*inputs)).all()


def _edges(n_donors, n_tissues, seed):
    g = torch.Generator().manual_seed(seed)
    has = torch.rand(n_donors, n_tissues, generator=g) < 0.5
    has[0] = False  # a donor without hyperedges
    donor, tissue = has.nonzero(as_tuple=True)
    order = torch.randperm(len(donor), generator=g)  # any order of pairs
    return donor[order], tissue[order]


def test_segment_softmax_sums_to_one_per_donor_and_head():
    logits = torch.randn(6, 4, 3)
    segment = torch.tensor([0, 0, 1, 2, 2, 2])
    alpha = segment_softmax(logits, segment, 3)
    sums = torch.zeros(3, 3).index_add(0, segment, alpha.sum(1))
    torch.testing.assert_close(sums, torch.ones(3, 3))


@pytest.mark.parametrize("seed", [0, 1])
def test_tissue_attention_equals_the_segment_softmax(seed):
    n_donors, n_tissues, n_metagenes, n_heads = 7, 5, 3, 4
    edge_donor, edge_tissue = _edges(n_donors, n_tissues, seed)
    logits = (torch.randn(n_tissues, n_metagenes, n_heads, dtype=torch.float64) * 20).requires_grad_()
    got = tissue_attention(logits, edge_donor, edge_tissue, n_donors)
    expected = segment_softmax(logits[edge_tissue], edge_donor, n_donors)
    torch.testing.assert_close(got, expected)
    upstream = torch.randn(got.shape, dtype=torch.float64)
    (grad_got,) = torch.autograd.grad(got, logits, upstream)
    (grad_expected,) = torch.autograd.grad(expected, logits, upstream)
    torch.testing.assert_close(grad_got, grad_expected)
    assert torch.isfinite(grad_got).all()


def _conv_inputs(n_donors=4, n_tissues=5, n_metagenes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    edge_donor, edge_tissue = _edges(n_donors, n_tissues, seed)
    return {
        "h_donor": torch.randn(n_donors, 6, generator=g),
        "h_tissue": torch.randn(n_tissues, 5, generator=g),
        "h_metagene": torch.randn(n_metagenes, 4, generator=g),
        "edge_attr": torch.randn(len(edge_donor), n_metagenes, 3, generator=g),
        "edge_donor": edge_donor,
        "edge_tissue": edge_tissue,
    }


def _per_hyperedge_formula(layer, x):
    """Donor update from phi_e applied to every hyperedge, with the per-donor softmax, in training mode too."""
    hidden = layer.message_activations(**x)  # draws phi_e's dropout first, as forward does
    messages = layer.message_output(hidden)
    logits = layer.attention_logits(x["h_tissue"], x["h_metagene"])[x["edge_tissue"]]
    alpha = segment_softmax(logits, x["edge_donor"], x["h_donor"].shape[0])
    heads = layer.n_heads
    weighted = (alpha[..., None] * messages.view(*messages.shape[:2], heads, -1)).sum(1)
    message = torch.zeros_like(weighted[:1]).expand(x["h_donor"].shape[0], -1, -1)
    message = message.index_add(0, x["edge_donor"], weighted).flatten(1)
    return x["h_donor"] + layer.update(torch.cat([x["h_donor"], message], dim=1))


@pytest.mark.parametrize(("norm", "chunk_elements"), [(None, None), (None, 1), (None, 20), ("layer", None)])
def test_conv_in_training_mode_equals_the_per_hyperedge_formula(norm, chunk_elements, monkeypatch):
    if chunk_elements is not None:  # one or a few pairs at a time
        monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", chunk_elements)
        monkeypatch.setattr(kernels, "PARALLEL_CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(0)
    # 3 metagenes x 8 hidden units per pair: a multiple of 4, so chunks draw the dropout mask of one draw
    layer = HypergraphAttentionConv(6, 5, 4, 3, n_heads=2, n_head_dim=4, dropout_rate=0.3, norm=norm).train()
    x = _conv_inputs()
    torch.manual_seed(1)
    got = layer(**x)
    torch.manual_seed(1)
    expected = _per_hyperedge_formula(layer, x)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(got.square().sum(), list(layer.parameters()))
    torch.manual_seed(1)
    expected_grads = torch.autograd.grad(
        _per_hyperedge_formula(layer, x).square().sum(), list(layer.parameters())
    )
    for a, b in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b)


def test_backward_uses_the_chunks_of_its_forward(monkeypatch):
    torch.manual_seed(0)
    layer = HypergraphAttentionConv(6, 5, 4, 3, n_heads=2, n_head_dim=4, dropout_rate=0.0)
    x = _conv_inputs()
    expected = torch.autograd.grad(layer(**x).square().sum(), list(layer.parameters()))
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 1)
    monkeypatch.setattr(kernels, "PARALLEL_CHUNK_ELEMENTS", 1)
    loss = layer(**x).square().sum()  # one pair per chunk ...
    monkeypatch.setattr(kernels, "CHUNK_ELEMENTS", 10**9)  # ... whatever the setting at backward
    monkeypatch.setattr(kernels, "PARALLEL_CHUNK_ELEMENTS", 10**9)
    for got, want in zip(torch.autograd.grad(loss, list(layer.parameters())), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_conv_runs_under_bf16_autocast_close_to_float32():
    torch.manual_seed(0)
    layer = HypergraphAttentionConv(6, 5, 4, 3, n_heads=2, n_head_dim=3, dropout_rate=0.0).eval()
    x = _conv_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer(**x)
    low.float().sum().backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in layer.parameters())
    torch.testing.assert_close(low.float(), layer(**x), rtol=0.05, atol=0.05)


def test_gaussian_nll_equals_the_normal_log_prob():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 50, generator=g, dtype=torch.float64)
    loc = torch.randn(7, 50, generator=g, dtype=torch.float64).requires_grad_()
    scale = (torch.rand(7, 50, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    expected = -torch.distributions.Normal(loc, scale).log_prob(x).mean(dim=-1)
    torch.testing.assert_close(kernels.gaussian_nll(x, loc, scale), expected)
    assert torch.autograd.gradcheck(lambda m, s: kernels.gaussian_nll(x, m, s), (loc, scale))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 under autocast, as log_prob of float32 x
        low = kernels.gaussian_nll(x.float(), loc.bfloat16(), scale.bfloat16())
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, expected.float(), atol=0.05, rtol=0.01)


@pytest.mark.parametrize("activation", ["relu", None])
def test_encoder_under_autocast_equals_the_autocast_linear_layer(activation):
    torch.manual_seed(0)
    encoder = MetageneEncoder(30, 3, 4, activation=activation)
    x, upstream = torch.randn(9, 30), torch.randn(9, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = encoder.activation(encoder.linear(x))
    (expected_grad,) = torch.autograd.grad((expected.float() * upstream).sum(), [encoder.linear.weight])
    for _ in range(2):  # the second step reuses the low-precision buffers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = encoder(x).view(9, 12)
        (grad,) = torch.autograd.grad((got.float() * upstream).sum(), [encoder.linear.weight])
        assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
        assert grad.dtype == torch.float32 and torch.equal(grad, expected_grad)


def test_sample_messages_pool_to_the_same_embeddings_as_each_source_set():
    """Leave-one-out sets of each donor: hidden units once per sample, pooled per set == forward per set."""
    torch.manual_seed(0)
    layer = HypergraphAttentionConv(6, 5, 4, 3, n_heads=2, n_head_dim=4, dropout_rate=0.2).eval()
    assert layer.shares_sample_messages
    n_donors, n_tissues, n_metagenes = 3, 4, 7
    h_donor, h_tissue, h_metagene = (
        torch.randn(n_donors, 6),
        torch.randn(n_tissues, 5),
        torch.randn(n_metagenes, 4),
    )
    observed = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1], [1, 0, 0, 1]], dtype=torch.bool)
    sample_donor, sample_tissue = observed.nonzero(as_tuple=True)
    sample_attr = torch.randn(len(sample_donor), n_metagenes, 3)
    sets, set_donor = [], []
    for d in range(n_donors):
        for t in observed[d].nonzero().ravel():
            mask = observed[d].clone()
            mask[t] = False
            sets.append(mask)
            set_donor.append(d)
    sets, set_donor = torch.stack(sets), torch.tensor(set_donor)
    edge_set, edge_tissue = sets.nonzero(as_tuple=True)
    lookup = torch.full(observed.shape, -1, dtype=torch.long)
    lookup[sample_donor, sample_tissue] = torch.arange(len(sample_donor))
    edge_sample = lookup[set_donor[edge_set], edge_tissue]
    with torch.no_grad():
        messages = layer.sample_messages(
            h_donor, h_tissue, h_metagene, sample_attr, sample_donor, sample_tissue
        )
        shared = layer.forward_sample_messages(
            h_donor[set_donor],
            h_tissue,
            h_metagene,
            messages,
            sample_tissue,
            edge_set,
            edge_sample,
            max_edges=3,
        )
        direct = layer(
            h_donor[set_donor], h_tissue, h_metagene, sample_attr[edge_sample], edge_set, edge_tissue
        )
    torch.testing.assert_close(shared, direct, rtol=1e-5, atol=1e-6)
    assert not layer.train().shares_sample_messages  # dropout draws differ per set in training
