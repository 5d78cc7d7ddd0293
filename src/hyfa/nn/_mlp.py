"""Multilayer perceptrons in the authors' block layout: Linear -> SiLU -> Dropout -> normalization.

The linear layer, SiLU and dropout of a block run as one step (:func:`fused_hidden`): the same
function as the three layers, with fewer passes over the activations, which dominate the cost
of HYFA on a CPU. Dropout draws its mask from 16 random bits per unit, so a unit is dropped with
probability ``p`` rounded to a multiple of ``2**-16`` (``0.174`` becomes ``0.17399597``), and
kept units are scaled by the inverse of the exact kept fraction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("layer", "batch", None)

#: Added to the pre-activation of dropped units: SiLU and its derivative are exactly zero there.
DROPPED_PRE_ACTIVATION = -1e4
#: Dropout probabilities are multiples of ``1 / DROPOUT_LEVELS`` (one 16-bit draw per unit).
DROPOUT_LEVELS = 2**16
#: Hidden layers of MLPs over at least :data:`PAD_MIN_ROWS` rows get zero units up to a multiple of
#: this width: CPU matrix products are up to twice as fast (e.g. with 240 rather than 239 columns).
PAD_MULTIPLE = 16
PAD_MIN_ROWS = 2048


def norm_layer(n_features: int, norm: str | None) -> nn.Module:
    """Return ``LayerNorm`` (``"layer"``), ``BatchNorm1d`` (``"batch"``, the authors' choice) or identity (``None``).

    Layer normalization makes each donor's prediction independent of the other donors in its
    minibatch; batch normalization, in eval mode, depends on running statistics that can drift
    from those of any one minibatch of hyperedges.
    """
    if norm == "layer":
        return nn.LayerNorm(n_features)
    if norm == "batch":
        return nn.BatchNorm1d(n_features)
    if norm is None:
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}.")


# -- dropout ------------------------------------------------------------------------------------
def dropout_levels(p: float) -> int:
    """Return the number of the ``DROPOUT_LEVELS`` 16-bit values that drop a unit at rate ``p``."""
    return round(p * DROPOUT_LEVELS)


def dropout_scale(p: float) -> float:
    """Return the factor dropout multiplies kept units by: one over the fraction of units kept."""
    levels = dropout_levels(p)
    return DROPOUT_LEVELS / (DROPOUT_LEVELS - levels) if levels < DROPOUT_LEVELS else 0.0


def dropout_mask(shape: Sequence[int], p: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Return a boolean mask of ``shape``, ``True`` where a unit is dropped.

    Each unit compares its own 16 of the 64 random bits of torch's generator with a threshold:
    four units per draw, which is several times faster on a CPU than ``torch.bernoulli``.
    """
    levels = dropout_levels(p)
    if levels in (0, DROPOUT_LEVELS):
        return torch.full(tuple(shape), levels > 0, dtype=torch.bool, device=device)
    n_units = 1
    for size in shape:
        n_units *= size
    words = torch.empty((n_units + 3) // 4, dtype=torch.int64, device=device).random_(-(2**63), None)
    threshold = levels - DROPOUT_LEVELS // 2  # `levels` int16 values lie below it
    dropped = torch.empty(tuple(shape), dtype=torch.uint8, device=device)  # faster to write than bool
    torch.lt(words.view(torch.int16)[:n_units].view(tuple(shape)), threshold, out=dropped)
    return dropped.view(torch.bool)


def drop_units_(pre: torch.Tensor, p: float) -> torch.Tensor:
    """Drop a random fraction ``p`` of the units of ``pre`` in place: add :data:`DROPPED_PRE_ACTIVATION` to them."""
    dropped = dropout_mask(pre.shape, p, pre.device).view(torch.uint8)  # adding 0/1 bytes is fastest
    return pre.add_(dropped, alpha=DROPPED_PRE_ACTIVATION)


# -- fused hidden activations -------------------------------------------------------------------
def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    """Return the autocast dtype of ``tensor``'s device when autocast is on there, else its dtype."""
    device_type = tensor.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tensor.dtype


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


def _broadcast_sum(row_bias, column_bias, shape: tuple[int, int, int], like: torch.Tensor) -> torch.Tensor:
    """Return a new ``shape`` tensor ``row_bias[:, None] + column_bias[None]`` (absent terms are zero)."""
    if row_bias is not None and column_bias is not None:
        return row_bias[:, None, :] + column_bias[None, :, :]
    if row_bias is not None:
        return row_bias[:, None, :].expand(shape).clone()
    if column_bias is not None:
        return column_bias[None, :, :].expand(shape).clone()
    return like.new_zeros(shape)


def pre_activation(x, weight, row_bias, column_bias, shape: tuple[int, int, int]) -> torch.Tensor:
    """Return a new ``shape`` tensor ``x @ weight.T + row_bias[:, None] + column_bias[None]``.

    ``x`` is ``(n_rows, n_columns, n_in)``; absent terms (``None``) are zero.
    """
    n_rows, n_columns, n_out = shape
    if x is not None and row_bias is None and n_columns == 1:  # a linear layer: its bias in the product
        flat = x.reshape(n_rows, -1)
        if column_bias is None:
            return (flat @ weight.T).view(shape)
        return torch.addmm(column_bias.reshape(1, n_out), flat, weight.T).view(shape)
    pre = _broadcast_sum(row_bias, column_bias, shape, x)
    if x is not None:
        pre.view(-1, n_out).addmm_(x.reshape(-1, x.shape[-1]), weight.T)
    return pre


class _FusedHidden(torch.autograd.Function):
    """``silu(pre)`` with dropped units zeroed, ``pre = x @ weight.T + row_bias[:, None] + column_bias[None]``.

    Dropped units have :data:`DROPPED_PRE_ACTIVATION` added to their pre-activation, which puts
    them (unless it exceeded 9,900) where SiLU and its derivative are exactly zero, in float32 and
    bfloat16; so the one saved tensor, ``pre``, gives both the output and the gradient, and no
    mask is kept for the backward pass.
    """

    @staticmethod
    def forward(ctx, x, weight, row_bias, column_bias, dropout_rate, scale_output, shape):
        reference = next(t for t in (x, row_bias, column_bias) if t is not None)
        dtype = _compute_dtype(reference)
        x, weight, row_bias, column_bias = (_cast(t, dtype) for t in (x, weight, row_bias, column_bias))
        with torch.autocast(reference.device.type, enabled=False):
            pre = pre_activation(x, weight, row_bias, column_bias, shape)
            if dropout_rate > 0:
                drop_units_(pre, dropout_rate)
            out = nn.functional.silu(pre)
        scale = dropout_scale(dropout_rate) if scale_output and dropout_rate > 0 else 1.0
        if scale != 1.0:
            out.mul_(scale)
        ctx.scale = scale
        ctx.has_bias = (row_bias is not None, column_bias is not None)
        ctx.save_for_backward(pre, x, weight)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        pre, x, weight = ctx.saved_tensors
        grad_pre = torch.ops.aten.silu_backward(grad_out.to(pre.dtype), pre)
        if ctx.scale != 1.0:
            grad_pre.mul_(ctx.scale)
        n_out = pre.shape[-1]
        flat = grad_pre.view(-1, n_out)
        needs_x, needs_weight, needs_row, needs_column = ctx.needs_input_grad[:4]
        grad_x = (flat @ weight).view(x.shape) if needs_x else None
        grad_weight = flat.T @ x.reshape(-1, x.shape[-1]) if needs_weight and x is not None else None
        grad_row = grad_pre.sum(dim=1) if needs_row and ctx.has_bias[0] else None
        grad_column = grad_pre.sum(dim=0) if needs_column and ctx.has_bias[1] else None
        return grad_x, grad_weight, grad_row, grad_column, None, None, None


def fused_hidden(
    x: torch.Tensor | None,
    weight: torch.Tensor | None,
    row_bias: torch.Tensor | None,
    column_bias: torch.Tensor | None,
    dropout_rate: float = 0.0,
    scale_output: bool = True,
) -> torch.Tensor:
    """Return ``dropout(silu(x @ weight.T + row_bias[:, None] + column_bias[None]))``.

    The same function as the layers, evaluated in one pass (see the module docstring for the
    dropout probabilities).

    Parameters
    ----------
    x
        ``(n_rows, n_columns, n_in)`` inputs, or ``None`` for biases alone.
    weight
        ``(n_out, n_in)`` weight (ignored without ``x``).
    row_bias
        ``(n_rows, n_out)`` terms shared along columns, or ``None``.
    column_bias
        ``(n_columns, n_out)`` terms shared along rows (e.g. a layer's bias as ``(1, n_out)``), or ``None``.
    dropout_rate
        Dropout probability; ``0`` (e.g. in eval mode) for none.
    scale_output
        Whether to multiply kept units by :func:`dropout_scale` (otherwise the caller does,
        e.g. in a linear layer that follows).

    Returns
    -------
    ``(n_rows, n_columns, n_out)`` activations.
    """
    parts = [t for t in (row_bias, column_bias) if t is not None]
    n_rows = x.shape[0] if x is not None else (row_bias.shape[0] if row_bias is not None else 1)
    n_columns = x.shape[1] if x is not None else (column_bias.shape[0] if column_bias is not None else 1)
    if x is None and not parts:
        raise ValueError("fused_hidden needs inputs or a bias.")
    n_out = weight.shape[0] if x is not None else parts[0].shape[-1]
    return _FusedHidden.apply(
        x, weight, row_bias, column_bias, float(dropout_rate), scale_output, (n_rows, n_columns, n_out)
    )


# -- padding ------------------------------------------------------------------------------------
def padded_width(n_features: int, n_rows: int, norm: nn.Module | None = None) -> int:
    """Return the width to compute ``n_features`` hidden units at over ``n_rows`` rows.

    :data:`PAD_MULTIPLE` rounds it up for large products; never with a normalization, which
    would see the extra units.
    """
    if n_rows < PAD_MIN_ROWS or (norm is not None and not isinstance(norm, nn.Identity)):
        return n_features
    return -(-n_features // PAD_MULTIPLE) * PAD_MULTIPLE


def pad_to(tensor: torch.Tensor | None, *widths: int) -> torch.Tensor | None:
    """Return ``tensor`` with zeros appended to its last ``len(widths)`` dimensions up to ``widths``.

    Extra hidden units computed from zero weights and biases are ``silu(0) = 0`` (or dropped),
    so the zero columns of the next layer's weight meet zeros: the function does not change.
    """
    if tensor is None:
        return None
    pads = []
    for size, width in zip(reversed(tensor.shape[-len(widths) :]), reversed(widths), strict=True):
        pads += [0, width - size]
    return nn.functional.pad(tensor, pads) if any(pads) else tensor


# -- blocks -------------------------------------------------------------------------------------
def _normalize(norm: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """Return ``norm`` applied to the last dimension of ``hidden`` ``(..., n_features)``."""
    if isinstance(norm, nn.Identity):
        return hidden
    return norm(hidden.reshape(-1, hidden.shape[-1])).reshape(hidden.shape)


def _fused_block(norm: nn.Module, rate: float, row_bias, column_bias, x=None, weight=None):
    """Return ``(hidden, scale)``: a fused block's output is ``hidden * scale``.

    Without normalization the dropout scale is left to the caller, to fold into the weight of
    the linear layer that follows (a small matrix, rather than every hidden unit).
    """
    if isinstance(norm, nn.Identity):
        hidden = fused_hidden(x, weight, row_bias, column_bias, rate, scale_output=False)
        return hidden, dropout_scale(rate) if rate > 0 else 1.0
    return _normalize(norm, fused_hidden(x, weight, row_bias, column_bias, rate)), 1.0


def _scaled(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    return tensor * scale if scale != 1.0 else tensor


class ActivationBlock(nn.Sequential):
    """SiLU, Dropout and normalization after a linear layer, with SiLU and dropout fused.

    The children (``SiLU``, ``Dropout``, normalization) are those of the unfused layout, so
    state-dict keys do not depend on the fusion.
    """

    def dropout_rate(self) -> float:
        """Return the dropout probability in the current mode (``0`` in eval mode)."""
        return self[1].p if self.training else 0.0

    def forward_unscaled(
        self, row_bias: torch.Tensor | None, column_bias: torch.Tensor | None, x=None, weight=None
    ) -> tuple[torch.Tensor, float]:
        """Return ``(hidden, scale)``; the block's output is ``hidden * scale``, ``(n_rows, n_columns, n_features)``.

        The block is applied to ``x @ weight.T + row_bias[:, None] + column_bias[None]``.
        """
        return _fused_block(self[2], self.dropout_rate(), row_bias, column_bias, x, weight)

    def forward_biases(
        self, row_bias: torch.Tensor | None, column_bias: torch.Tensor | None, x=None, weight=None
    ) -> torch.Tensor:
        """Return the block applied to ``x @ weight.T + row_bias[:, None] + column_bias[None]``."""
        return _scaled(*self.forward_unscaled(row_bias, column_bias, x, weight))

    def forward(self, pre: torch.Tensor) -> torch.Tensor:
        """Return ``norm(dropout(silu(pre)))`` for ``pre`` of shape ``(n, n_features)``."""
        return self.forward_biases(pre, None)[:, 0]


class HiddenBlock(nn.Sequential):
    """Linear, SiLU, Dropout and normalization, the first three fused (children as unfused)."""

    def forward_unscaled(
        self, x: torch.Tensor, input_scale: float = 1.0, width: int | None = None
    ) -> tuple[torch.Tensor, float]:
        """Return ``(hidden, scale)``: the block's output for ``x * input_scale`` is ``hidden * scale``.

        ``x`` may have zero columns beyond the layer's inputs, and ``hidden`` has ``width``
        columns (default: the layer's outputs), the extra ones zero (see :func:`pad_to`).
        """
        linear, _, dropout, norm = self
        rate = dropout.p if self.training else 0.0
        width = width or linear.out_features
        weight = pad_to(_scaled(linear.weight, input_scale), width, x.shape[-1])
        bias = pad_to(None if linear.bias is None else linear.bias[None], width)
        hidden, scale = _fused_block(norm, rate, None, bias, x[:, None, :], weight)
        return hidden[:, 0], scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output for ``x`` of shape ``(n, n_in)``."""
        return _scaled(*self.forward_unscaled(x))


def activation_block(n_features: int, dropout_rate: float, norm: str | None) -> ActivationBlock:
    """Return the part of a hidden block after its linear layer: SiLU, Dropout, normalization."""
    return ActivationBlock(nn.SiLU(), nn.Dropout(dropout_rate), norm_layer(n_features, norm))


def hidden_block(n_in: int, n_out: int, dropout_rate: float, norm: str | None = None) -> HiddenBlock:
    """Return one hidden block: Linear, SiLU, Dropout, normalization."""
    return HiddenBlock(nn.Linear(n_in, n_out), nn.SiLU(), nn.Dropout(dropout_rate), norm_layer(n_out, norm))


class MLP(nn.Module):
    """Hidden blocks followed by a linear output layer.

    Parameters
    ----------
    n_input
        Input features.
    n_hidden
        Width of each hidden block (empty for a single linear layer).
    n_output
        Output features.
    dropout_rate
        Dropout after each hidden activation.
    output_bias
        Whether the output layer has a bias.
    norm
        Normalization of hidden blocks (see :func:`norm_layer`).
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: Sequence[int],
        n_output: int,
        dropout_rate: float = 0.0,
        output_bias: bool = True,
        norm: str | None = None,
    ):
        super().__init__()
        widths = [n_input, *n_hidden]
        self.hidden = nn.Sequential(
            *(hidden_block(a, b, dropout_rate, norm) for a, b in zip(widths[:-1], widths[1:], strict=True))
        )
        self.output = nn.Linear(widths[-1], n_output, bias=output_bias)

    def forward(self, x: torch.Tensor, input_scale: float = 1.0) -> torch.Tensor:
        """Return the MLP's output for ``x * input_scale``, ``x`` of shape ``(..., n_input)``.

        ``x`` may have zero columns beyond ``n_input`` (see :func:`pad_to`). Each hidden block's
        dropout scale is folded into the weight of the next layer, and hidden widths are padded
        for fast matrix products (:func:`padded_width`).
        """
        shape = x.shape[:-1]
        hidden, scale = x.reshape(-1, x.shape[-1]), input_scale
        for block in self.hidden:
            width = padded_width(block[0].out_features, hidden.shape[0], block[3])
            hidden, scale = block.forward_unscaled(hidden, scale, width)
        weight = pad_to(_scaled(self.output.weight, scale), hidden.shape[-1])
        y = nn.functional.linear(hidden, weight, self.output.bias)
        return y.reshape(*shape, -1)


class FactorizedInput(nn.Module):
    """First linear layer over a concatenation ``[a_1; ...; a_n]``, applied part by part.

    ``W [a_1; ...; a_n] + b == sum_i W_i a_i + b``. Evaluating each part only for its distinct
    rows (e.g. once per tissue rather than once per hyperedge) and broadcasting the sum is the
    same function at a fraction of the cost.

    Parameters
    ----------
    n_inputs
        Features of each part, in concatenation order.
    n_output
        Output features.
    """

    def __init__(self, n_inputs: Sequence[int], n_output: int):
        super().__init__()
        self.parts = nn.ModuleList(nn.Linear(n, n_output, bias=False) for n in n_inputs)
        self.bias = nn.Parameter(torch.zeros(n_output))
        bound = 1.0 / sum(n_inputs) ** 0.5  # the init of one nn.Linear over the concatenation
        for part in self.parts:
            nn.init.uniform_(part.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def project(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Return ``[W_1 inputs[0], ..., W_n inputs[n-1]]``, without the bias."""
        return [part(x) for part, x in zip(self.parts, inputs, strict=True)]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Return ``sum_i W_i inputs[i] + b``; the inputs must broadcast against each other."""
        out = self.bias
        for projected in self.project(*inputs):
            out = out + projected
        return out
