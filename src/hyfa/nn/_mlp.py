"""Multilayer perceptrons in the authors' block layout: Linear -> SiLU -> Dropout -> normalization."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

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


def activation_block(n_features: int, dropout_rate: float, norm: str | None) -> nn.Sequential:
    """Return the part of a hidden block after its linear layer: SiLU, Dropout, normalization."""
    return nn.Sequential(nn.SiLU(), nn.Dropout(dropout_rate), norm_layer(n_features, norm))


def hidden_block(n_in: int, n_out: int, dropout_rate: float, norm: str | None = None) -> nn.Sequential:
    """Return one hidden block: Linear, SiLU, Dropout, normalization."""
    return nn.Sequential(nn.Linear(n_in, n_out), *activation_block(n_out, dropout_rate, norm))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the MLP's output for ``x`` of shape ``(..., n_input)``."""
        shape = x.shape[:-1]
        y = self.output(self.hidden(x.reshape(-1, x.shape[-1])))
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
