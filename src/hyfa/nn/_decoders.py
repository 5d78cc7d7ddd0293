"""Likelihood heads mapping predicted metagene attributes to genes :cite:p:`Vinas2023`."""

from __future__ import annotations

import numpy as np
import torch
from scvi.distributions import NegativeBinomial, ZeroInflatedNegativeBinomial
from torch import nn
from torch.distributions import Normal

from ._mlp import hidden_block

#: Upper bound of ``log theta`` (the authors clamp the NB dispersion logits at 12).
MAX_LOG_THETA = 12.0


class GaussianDecoder(nn.Module):
    """``e_hat = MLP(concat_j e_hat_ij)``; mean ``W_mu e_hat + b``, sd ``softplus(W_sigma e_hat + b)``.

    Parameters
    ----------
    n_input
        Concatenated metagene attributes (``n_metagenes * n_factors``).
    n_genes
        Output genes.
    n_hidden
        Width of ``e_hat``.
    dropout_rate
        Dropout in the hidden block.
    min_scale
        Added to the standard deviation for numerical stability.
    norm
        Normalization of the hidden block: ``"layer"``, ``"batch"`` or ``None``.
    """

    def __init__(
        self,
        n_input: int,
        n_genes: int,
        n_hidden: int = 256,
        dropout_rate: float = 0.174,
        min_scale: float = 1e-4,
        norm: str | None = None,
    ):
        super().__init__()
        self.hidden = hidden_block(n_input, n_hidden, dropout_rate, norm)
        self.mean = nn.Linear(n_hidden, n_genes)
        self.scale = nn.Linear(n_hidden, n_genes)
        self.min_scale = min_scale

    def forward(self, metagene_attr: torch.Tensor, mean_offset: torch.Tensor | None = None) -> Normal:
        """Return the predictive Normal for ``(n_targets, n_metagenes, n_factors)`` attributes.

        ``mean_offset``, if given, ``(n_targets, n_genes)`` is added to the mean.
        """
        hidden = self.hidden(metagene_attr.flatten(start_dim=1))
        scale = nn.functional.softplus(self.scale(hidden)) + self.min_scale
        mean = self.mean(hidden)
        if mean_offset is not None:
            mean = mean + mean_offset
        return Normal(mean, scale, validate_args=False)  # the loss reports non-finite values


class CountDecoder(nn.Module):
    """Negative-binomial (optionally zero-inflated) parameters and a log-normal library size.

    From ``e_hat = MLP(concat_j e_hat_ij)``: gene proportions ``s = softmax(W_s e_hat + b_s)``,
    inverse dispersion ``theta = exp(W_theta e_hat + b_theta)``, with ``zero_inflated`` the
    dropout logits ``W_pi e_hat + b_pi``, and the library size ``log l ~ N(nu, omega)`` with
    ``nu = W_nu e_hat + b_nu`` and ``omega = exp(W_omega e_hat + b_omega)``. The count mean is
    ``mu = l * s`` (times the number of cells for cell-type signatures).

    Parameters
    ----------
    n_input
        Concatenated metagene attributes (``n_metagenes * n_factors``).
    n_genes
        Output genes.
    n_hidden
        Width of ``e_hat``.
    dropout_rate
        Dropout in the hidden block.
    zero_inflated
        Whether to output zero-inflation logits (ZINB) or not (NB).
    norm
        Normalization of the hidden block: ``"layer"``, ``"batch"`` or ``None``.
    log_library_mean, log_library_sd
        Initial ``nu`` and ``omega`` biases: the mean and standard deviation of the training
        data's log library sizes.
    """

    def __init__(
        self,
        n_input: int,
        n_genes: int,
        n_hidden: int = 256,
        dropout_rate: float = 0.174,
        zero_inflated: bool = False,
        norm: str | None = None,
        log_library_mean: float = 0.0,
        log_library_sd: float = 1.0,
    ):
        super().__init__()
        self.hidden = hidden_block(n_input, n_hidden, dropout_rate, norm)
        self.proportions = nn.Linear(n_hidden, n_genes)
        self.log_theta = nn.Linear(n_hidden, n_genes)
        self.zi_logits = nn.Linear(n_hidden, n_genes) if zero_inflated else None
        self.library = nn.Linear(n_hidden, 2)  # nu and log omega
        with torch.no_grad():  # start the library model at the data's log-library distribution
            self.library.bias.copy_(
                torch.tensor([log_library_mean, float(np.log(max(log_library_sd, 1e-3)))])
            )

    def forward(
        self, metagene_attr: torch.Tensor, logit_offset: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | Normal]:
        """Return ``proportions``, ``theta``, ``zi_logits`` (or ``None``) and ``log_library`` (a Normal).

        ``metagene_attr`` has shape ``(n_targets, n_metagenes, n_factors)``; ``logit_offset``, if
        given, ``(n_targets, n_genes)`` is added to ``W_s e_hat + b_s`` before the softmax.
        """
        hidden = self.hidden(metagene_attr.flatten(start_dim=1))
        nu, log_omega = self.library(hidden).unbind(dim=-1)
        logits = self.proportions(hidden)
        if logit_offset is not None:
            logits = logits + logit_offset
        return {
            "proportions": torch.softmax(logits, dim=-1),
            "theta": torch.exp(self.log_theta(hidden).clamp(max=MAX_LOG_THETA)),
            "zi_logits": None if self.zi_logits is None else self.zi_logits(hidden),
            "log_library": Normal(nu, torch.exp(log_omega.clamp(-10.0, 10.0)), validate_args=False),
        }


def predicted_library(log_library: Normal) -> torch.Tensor:
    """Return the median ``exp(nu)`` of a log-normal library size (robust to a wide ``omega``)."""
    return torch.exp(log_library.loc)


def count_distribution(
    proportions: torch.Tensor,
    theta: torch.Tensor,
    zi_logits: torch.Tensor | None,
    library: torch.Tensor,
) -> NegativeBinomial:
    """Return scvi-tools' NB (or ZINB with ``zi_logits``) with mean ``library[:, None] * proportions``.

    ``library`` holds one total per row (library size, times the number of cells for signatures).
    """
    mu = library[..., None] * proportions
    if zi_logits is None:
        return NegativeBinomial(mu=mu, theta=theta, validate_args=False)
    return ZeroInflatedNegativeBinomial(mu=mu, theta=theta, zi_logits=zi_logits, validate_args=False)


def count_variance(px: NegativeBinomial) -> torch.Tensor:
    """Return the variance of scvi-tools' NB or ZINB (whose ``variance`` is not implemented)."""
    nb_variance = px.mu + px.mu**2 / px.theta
    if isinstance(px, ZeroInflatedNegativeBinomial):
        pi = torch.sigmoid(px.zi_logits)
        return (1 - pi) * nb_variance + pi * (1 - pi) * px.mu**2
    return nb_variance
