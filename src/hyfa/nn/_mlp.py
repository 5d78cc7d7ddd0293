"""Multilayer perceptrons in the authors' block layout: Linear -> SiLU -> Dropout -> normalization.

The linear layer, SiLU and dropout of a block run as one step (:func:`~hyfa.nn._kernels.fused_hidden`):
the same function as the three layers, with fewer passes over the activations, which dominate the
cost of HYFA on a CPU (dropout as in :mod:`hyfa.nn._dropout`). Hidden widths of large products are
padded with zero units (:mod:`hyfa.nn._padding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._dropout import dropout_scale
from ._kernels import fused_hidden
from ._padding import pad_to, padded_width

NORMS = ("layer", "batch", None)


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
