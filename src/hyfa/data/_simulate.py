"""Simulated multi-tissue expression with known ground truth, for testing imputation methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import optimize, stats

from ._mudata import build_mudata

_HIDDEN_PER_LATENT = 4
_AGE_RANGE = (20.0, 70.0)


def simulate(
    n_donors: int = 300,
    n_tissues: int = 10,
    n_genes: int = 40,
    n_latent: int = 4,
    missing_rate: float = 0.66,
    noise_sd: float = 0.3,
    covariates: bool = False,
    min_tissues: int = 2,
    seed: int = 0,
) -> tuple[MuData, MuData]:
    r"""Return simulated multi-tissue expression with missing donor x tissue pairs, and its ground truth.

    Each donor ``i`` has latent factors :math:`z_i \sim N(0, I)` shared by all tissues, as in the
    hypergraph model of :cite:p:`Vinas2023`. With ``covariates``, a donor's age and sex shift its
    factors by a fixed linear effect. Each tissue ``t`` maps the (shifted) factors to gene
    expression through its own random two-layer network,
    :math:`\mu_{it} = W_{2t} \tanh(W_{1t} u_i + b_{1t}) + b_{2t}`, which a linear method cannot
    capture fully, and Gaussian noise of standard deviation ``noise_sd`` is added. Each
    donor x tissue pair is then observed at random so that about ``1 - missing_rate`` of the grid
    is observed while every donor keeps at least ``min_tissues`` tissues.

    Parameters
    ----------
    n_donors
        Number of donors.
    n_tissues
        Number of tissues.
    n_genes
        Number of genes, the same in every tissue.
    n_latent
        Number of donor latent factors.
    missing_rate
        Expected fraction of donor x tissue pairs that are not observed.
    noise_sd
        Standard deviation of the Gaussian measurement noise.
    covariates
        Whether donors get an age (uniform in 20-70 years) and a sex that affect expression.
    min_tissues
        Minimum number of observed tissues per donor.
    seed
        Seed of the :func:`numpy.random.default_rng` generator; equal seeds give equal data.

    Returns
    -------
    ``(observed, truth)``, two MuData with one modality per tissue (``"tissue_0"``, ...), genes
    ``"gene_0"``, ... and donors ``"donor_0"``, ... (in numeric order).

    - ``observed``: each tissue holds only its observed donors; ``.X`` is ``float32`` and equal to
      ``truth`` at those entries.
    - ``truth``: every donor in every tissue; ``.X`` is the noisy expression that would have been
      measured and ``.layers["mean"]`` its noise-free mean. ``truth.obsm["latent"]`` holds the
      donors' factors :math:`z_i`.

    With ``covariates``, both have ``.obs["age"]`` (float, years) and ``.obs["sex"]`` (categorical).

    Examples
    --------
    >>> import hyfa
    >>> observed, truth = hyfa.data.simulate(n_donors=50, seed=1)
    >>> observed.n_obs, len(observed.mod)
    (50, 10)
    """
    _check_arguments(n_donors, n_tissues, n_genes, n_latent, missing_rate, noise_sd, min_tissues)
    rng = np.random.default_rng(seed)
    donors = pd.Index([f"donor_{i}" for i in range(n_donors)])
    tissues = [f"tissue_{t}" for t in range(n_tissues)]
    genes = pd.Index([f"gene_{g}" for g in range(n_genes)])

    z = rng.standard_normal((n_donors, n_latent))
    obs = pd.DataFrame(index=donors)
    u = z
    if covariates:
        age = rng.uniform(*_AGE_RANGE, size=n_donors)
        is_male = rng.random(n_donors) < 0.5
        design = np.column_stack([(age - np.mean(_AGE_RANGE)) / 15.0, np.where(is_male, 0.5, -0.5)])
        u = z + design @ rng.normal(0.0, 0.7, size=(2, n_latent))
        obs["age"] = age
        obs["sex"] = pd.Categorical(np.where(is_male, "male", "female"), categories=["female", "male"])

    mean = np.stack([_tissue_network(u, n_genes, rng) for _ in tissues])
    noisy = (mean + rng.normal(0.0, noise_sd, size=mean.shape)).astype(np.float32)
    mean = mean.astype(np.float32)
    observed_mask = _observation_mask(n_donors, n_tissues, missing_rate, min_tissues, rng)

    params = {
        "n_latent": n_latent,
        "missing_rate": float(missing_rate),
        "noise_sd": float(noise_sd),
        "covariates": bool(covariates),
        "min_tissues": min_tissues,
        "seed": int(seed),
    }
    var = pd.DataFrame(index=genes)
    truth_mods, observed_mods = {}, {}
    for t, tissue in enumerate(tissues):
        truth_mods[tissue] = AnnData(
            X=noisy[t], obs=pd.DataFrame(index=donors), var=var.copy(), layers={"mean": mean[t]}
        )
        rows = np.flatnonzero(observed_mask[:, t])
        observed_mods[tissue] = AnnData(
            X=noisy[t][rows].copy(), obs=pd.DataFrame(index=donors[rows]), var=var.copy()
        )
    truth = build_mudata(truth_mods, obs, uns={"simulate": params})
    truth.obsm["latent"] = z.astype(np.float32)
    observed = build_mudata(observed_mods, obs, uns={"simulate": params})
    return observed, truth


def _check_arguments(n_donors, n_tissues, n_genes, n_latent, missing_rate, noise_sd, min_tissues) -> None:
    """Raise a :class:`ValueError` naming the first invalid argument of :func:`simulate`."""
    for name, value in {
        "n_donors": n_donors,
        "n_tissues": n_tissues,
        "n_genes": n_genes,
        "n_latent": n_latent,
    }.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not isinstance(min_tissues, int | np.integer) or not 1 <= min_tissues <= n_tissues:
        raise ValueError(
            f"min_tissues must be an integer between 1 and n_tissues={n_tissues}, got {min_tissues!r}."
        )
    if not 0.0 <= missing_rate < 1.0:
        raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate!r}.")
    if not noise_sd >= 0.0:
        raise ValueError(f"noise_sd must be non-negative, got {noise_sd!r}.")
    if (1.0 - missing_rate) * n_tissues < min_tissues:
        raise ValueError(
            f"missing_rate={missing_rate} leaves {(1.0 - missing_rate) * n_tissues:.2f} observed tissues per donor "
            f"on average, fewer than min_tissues={min_tissues}; lower missing_rate or min_tissues."
        )


def _tissue_network(u: np.ndarray, n_genes: int, rng: np.random.Generator) -> np.ndarray:
    """Return a random two-layer tanh network applied to ``u``: a donors x genes mean expression."""
    n_latent = u.shape[1]
    n_hidden = _HIDDEN_PER_LATENT * n_latent
    w1 = rng.normal(0.0, 2.0 / np.sqrt(n_latent), size=(n_latent, n_hidden))
    b1 = rng.normal(0.0, 0.5, size=n_hidden)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(n_hidden), size=(n_hidden, n_genes))
    b2 = rng.normal(0.0, 1.0, size=n_genes)
    return np.tanh(u @ w1 + b1) @ w2 + b2


def _observation_mask(
    n_donors: int, n_tissues: int, missing_rate: float, min_tissues: int, rng: np.random.Generator
) -> np.ndarray:
    """Return a donors x tissues boolean mask with about ``1 - missing_rate`` observed, ``min_tissues`` per donor.

    Each donor observes ``max(min_tissues, Binomial(n_tissues, p))`` tissues chosen uniformly, with
    ``p`` set so that the expected observed fraction is ``1 - missing_rate``.
    """
    target = (1.0 - missing_rate) * n_tissues
    k = np.arange(n_tissues + 1)

    def excess(p: float) -> float:
        return float(np.sum(np.maximum(k, min_tissues) * stats.binom.pmf(k, n_tissues, p))) - target

    p = 1.0 if excess(1.0) <= 0 else (0.0 if excess(0.0) >= 0 else optimize.brentq(excess, 0.0, 1.0))
    n_observed = np.maximum(rng.binomial(n_tissues, p, size=n_donors), min_tissues)
    order = np.argsort(rng.random((n_donors, n_tissues)), axis=1)
    return np.argsort(order, axis=1) < n_observed[:, None]
