"""Simulated multi-tissue expression with known ground truth, for testing imputation methods."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import optimize, special, stats

from ._mudata import build_mudata

_HIDDEN_PER_LATENT = 4
_AGE_RANGE = (20.0, 70.0)

# Independent random streams, ``numpy.random.default_rng([seed, stream])``, so that raw counts and
# cell types leave the draws of the Gaussian simulation (and hence its outputs) unchanged.
_STREAM_PROGRAMS = 1  # cell-type programs of the bulk genes and cell-type fractions of the tissues
_STREAM_COUNTS = 2  # bulk library sizes and read counts
_STREAM_EXTRA_GENES = 3  # programs of the genes measured only in single cells (simulate_single_cell)
# Scales on the log-expression scale (the tissue effects of the Gaussian simulation have standard
# deviation about 1.2 across genes and 0.75 across donors).
_GENE_SD = 1.5  # genes' baseline, shared by all tissues and cell types: gene means span decades
_MARKER_SD = 1.0  # cell types' donor-independent gene offsets (markers)
_PROGRAM_SD = 1.5  # cell types' donor-dependent programs: about 1 across donors, shared by tissues
_FRACTION_CONCENTRATION = 2.0  # Dirichlet concentration of each cell type's fraction of a tissue


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
    shared_gene_sd: float = 0.0,
    counts: bool = False,
    n_cell_types: int = 4,
    library_size: tuple[float, float] = (1e4, 1e6),
    theta: float = 10.0,
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

    With ``counts``, the data are raw read counts made of ``n_cell_types`` cell types instead, for
    the negative-binomial model of :cite:p:`Vinas2023` and for :func:`hyfa.data.simulate_single_cell`.
    The network output :math:`\mu_{it}` above becomes the tissue's effect on the log expression of
    every cell type, and cell type ``c`` adds a donor-dependent program shared by all tissues,

    .. math::

        \log p_{itc} = \mu_{it} + f_c(u_i) + m_c + \mathrm{const},
        \qquad \sum_g p_{itcg} = 1,

    with :math:`f_c(u) = W_{2c} \tanh(W_{1c} u + b_{1c})` a random two-layer network (standard
    deviation about 1 across donors, larger than the tissue's about 0.75, so that a cell type's
    donor effects largely recur across tissues) and :math:`m_c` random gene offsets: a baseline of
    each gene shared by all cell types (standard deviation 1.5, so that gene means span decades)
    plus the cell type's markers (standard deviation 1). The tissue is a mixture of the cell
    types with fixed fractions :math:`w_{tc}` (a Dirichlet draw per tissue, the same for every
    donor), so its gene proportions are :math:`\rho_{it} = \sum_c w_{tc} p_{itc}`. A sample's
    library size :math:`l_{it}` is log-uniform in ``library_size``, and its counts are negative
    binomial with mean :math:`l_{it} \rho_{it}` and inverse dispersion ``theta`` (variance
    :math:`\mu + \mu^2 / \theta`), drawn as a gamma-Poisson mixture. The same donors and tissues are
    observed as without ``counts`` for the same ``seed``, and ``noise_sd`` is not used.

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
    shared_gene_sd
        Standard deviation of donor x gene effects added to every tissue alike (like a cis-eQTL
        acting everywhere: gene-specific variation between donors that low-rank factors miss);
        0 (default) for none. Normalized expression only. The rest of the data are those of the
        same ``seed`` without it.
    counts
        Whether to simulate raw read counts of a mixture of cell types (see above) instead of
        Gaussian expression.
    n_cell_types
        Number of cell types (``"cell_type_0"``, ...) with ``counts``.
    library_size
        Range ``(low, high)`` of the samples' library sizes with ``counts``, drawn log-uniformly.
    theta
        Inverse dispersion of the negative-binomial counts with ``counts``.

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

    With ``counts``, ``.X`` holds integer counts (``float32``) and ``truth`` also has

    - per tissue, ``.layers["mean"]``: the expected counts :math:`l_{it} \rho_{it}`;
      ``.layers["proportions"]``: :math:`\rho_{it}` (each row sums to 1);
      ``.layers["tissue_effect"]``: :math:`\mu_{it}`; ``.obs["library_size"]``: :math:`l_{it}`;
    - ``.obsm["factors"]``: the donors' factors :math:`u_i` after the covariate shift (equal to
      ``.obsm["latent"]`` without ``covariates``);
    - ``.uns["simulate"]``: the arguments, ``"cell_types"`` and ``"cell_type_fractions"``, a tissues
      x cell types array of :math:`w_{tc}`.

    Examples
    --------
    >>> import hyfa
    >>> observed, truth = hyfa.data.simulate(n_donors=50, seed=1)
    >>> observed.n_obs, len(observed.mod)
    (50, 10)

    Raw counts of a mixture of cell types:

    >>> observed, truth = hyfa.data.simulate(n_donors=50, counts=True, seed=1)
    >>> bool((observed["tissue_0"].X == observed["tissue_0"].X.round()).all())
    True
    >>> truth.uns["simulate"]["cell_types"]
    ['cell_type_0', 'cell_type_1', 'cell_type_2', 'cell_type_3']
    """
    _check_arguments(n_donors, n_tissues, n_genes, n_latent, missing_rate, noise_sd, min_tissues)
    if not shared_gene_sd >= 0.0:
        raise ValueError(f"shared_gene_sd must be non-negative, got {shared_gene_sd!r}.")
    if counts and shared_gene_sd:
        raise ValueError(
            "shared_gene_sd applies to normalized expression only; pass counts=False or shared_gene_sd=0."
        )
    if counts:
        _check_count_arguments(n_cell_types, library_size, theta, seed)
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
    if shared_gene_sd:  # drawn last: the other draws stay those of the same seed without it
        shared = rng.normal(0.0, shared_gene_sd, size=(n_donors, n_genes))
        mean = (mean + shared).astype(np.float32)
        noisy = (noisy + shared).astype(np.float32)

    params = {
        "n_latent": n_latent,
        "missing_rate": float(missing_rate),
        "noise_sd": float(noise_sd),
        "shared_gene_sd": float(shared_gene_sd),
        "covariates": bool(covariates),
        "min_tissues": min_tissues,
        "seed": int(seed),
    }
    layers = [{"mean": mean[t]} for t in range(n_tissues)]
    sample_obs = [pd.DataFrame(index=donors) for _ in tissues]
    if counts:
        programs = cell_type_programs(int(seed), n_latent, n_cell_types, n_tissues, n_genes)
        noisy, layers, library = _bulk_counts(u, mean, programs, library_size, theta, int(seed))
        for t in range(n_tissues):
            sample_obs[t]["library_size"] = library[t]
        params.update(
            counts=True,
            n_cell_types=n_cell_types,
            library_size=[float(library_size[0]), float(library_size[1])],
            theta=float(theta),
            cell_types=[f"cell_type_{c}" for c in range(n_cell_types)],
            cell_type_fractions=programs.fractions.copy(),
        )
    var = pd.DataFrame(index=genes)
    truth_mods, observed_mods = {}, {}
    for t, tissue in enumerate(tissues):
        truth_mods[tissue] = AnnData(X=noisy[t], obs=sample_obs[t], var=var.copy(), layers=layers[t])
        rows = np.flatnonzero(observed_mask[:, t])
        observed_mods[tissue] = AnnData(
            X=noisy[t][rows].copy(), obs=pd.DataFrame(index=donors[rows]), var=var.copy()
        )
    truth = build_mudata(truth_mods, obs, uns={"simulate": params})
    truth.obsm["latent"] = z.astype(np.float32)
    if counts:
        truth.obsm["factors"] = u.astype(np.float32)
    observed = build_mudata(observed_mods, obs, uns={"simulate": params})
    return observed, truth


@dataclass
class CellTypePrograms:
    """Random parameters of the cell types' gene programs of :func:`simulate` (``counts=True``).

    Attributes
    ----------
    w1, b1
        Hidden layer of each cell type's network, cell types x factors x hidden and cell types x hidden.
    w2
        Output weights, cell types x hidden x genes.
    marker
        Donor-independent gene offsets, cell types x genes: a baseline of each gene (the same in
        every cell type) plus the cell type's marker offsets.
    fractions
        Cell-type fractions of each tissue, tissues x cell types (rows sum to 1).
    """

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    marker: np.ndarray
    fractions: np.ndarray

    def log_proportions(self, u: np.ndarray, tissue_effect: np.ndarray) -> np.ndarray:
        """Return the cell types' log gene proportions in one tissue, cell types x donors x genes.

        Parameters
        ----------
        u
            Donors x factors.
        tissue_effect
            Donors x genes effect of the tissue on log expression (its network output).
        """
        hidden = np.tanh(np.einsum("dl,clh->cdh", u, self.w1) + self.b1[:, None, :])
        logits = tissue_effect[None] + np.einsum("cdh,chg->cdg", hidden, self.w2) + self.marker[:, None, :]
        return special.log_softmax(logits, axis=-1)

    def single_cell_genes(
        self, seed: int, n_shared: int, n_extra: int
    ) -> tuple[CellTypePrograms, np.ndarray]:
        """Return the programs of single-cell genes and, per gene, the bulk gene whose tissue effect it takes.

        The single-cell genes are the first ``n_shared`` bulk genes followed by ``n_extra`` genes
        measured only in single cells. These share the cell types' hidden layers and get their
        own output weights and offsets, and each takes the tissue effect of a random *partner* bulk
        gene (co-regulation), so that tissue effects on them are known from bulk. The draws depend
        only on ``seed`` and ``n_extra``.
        """
        rng = np.random.default_rng([seed, _STREAM_EXTRA_GENES])
        n_cell_types, n_hidden, n_bulk = self.w2.shape
        w2 = rng.normal(0.0, _PROGRAM_SD / np.sqrt(n_hidden), size=(n_cell_types, n_hidden, n_extra))
        marker = rng.normal(0.0, _GENE_SD, size=n_extra) + rng.normal(
            0.0, _MARKER_SD, size=(n_cell_types, n_extra)
        )
        partner = rng.integers(0, n_bulk, size=n_extra)
        programs = CellTypePrograms(
            self.w1,
            self.b1,
            np.concatenate([self.w2[:, :, :n_shared], w2], axis=2),
            np.concatenate([self.marker[:, :n_shared], marker], axis=1),
            self.fractions,
        )
        return programs, np.r_[np.arange(n_shared), partner]


def cell_type_programs(
    seed: int, n_latent: int, n_cell_types: int, n_tissues: int, n_genes: int
) -> CellTypePrograms:
    """Return the random cell-type programs that :func:`simulate` uses with ``counts`` for ``seed``."""
    rng = np.random.default_rng([seed, _STREAM_PROGRAMS])
    n_hidden = _HIDDEN_PER_LATENT * n_latent
    w1 = rng.normal(0.0, 2.0 / np.sqrt(n_latent), size=(n_cell_types, n_latent, n_hidden))
    b1 = rng.normal(0.0, 0.5, size=(n_cell_types, n_hidden))
    w2 = rng.normal(0.0, _PROGRAM_SD / np.sqrt(n_hidden), size=(n_cell_types, n_hidden, n_genes))
    marker = rng.normal(0.0, _GENE_SD, size=n_genes) + rng.normal(
        0.0, _MARKER_SD, size=(n_cell_types, n_genes)
    )
    fractions = rng.dirichlet(np.full(n_cell_types, _FRACTION_CONCENTRATION), size=n_tissues)
    return CellTypePrograms(w1, b1, w2, marker, fractions)


def _bulk_counts(u, tissue_effect, programs, library_size, theta, seed):
    """Return bulk counts, per-tissue layers and library sizes of a mixture of cell types.

    ``tissue_effect`` is the tissues x donors x genes ``float32`` network output; the counts are
    tissues x donors x genes ``float32``, the layers one dict per tissue and the library sizes
    tissues x donors.
    """
    rng = np.random.default_rng([seed, _STREAM_COUNTS])
    n_tissues, n_donors, _ = tissue_effect.shape
    low, high = np.log(library_size[0]), np.log(library_size[1])
    library = np.exp(rng.uniform(low, high, size=(n_tissues, n_donors)))
    counts, layers = [], []
    for t in range(n_tissues):
        effect = tissue_effect[t].astype(np.float64)
        cell_types = np.exp(programs.log_proportions(u, effect))
        proportions = np.einsum("c,cdg->dg", programs.fractions[t], cell_types)
        expected = library[t][:, None] * proportions
        counts.append(rng.poisson(rng.gamma(theta, expected / theta)).astype(np.float32))
        layers.append(
            {
                "mean": expected.astype(np.float32),
                "proportions": proportions.astype(np.float32),
                "tissue_effect": tissue_effect[t],
            }
        )
    return np.stack(counts), layers, library


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


def _check_count_arguments(n_cell_types, library_size, theta, seed) -> None:
    """Raise a :class:`ValueError` naming the first invalid count argument of :func:`simulate`."""
    if not isinstance(n_cell_types, int | np.integer) or n_cell_types < 1:
        raise ValueError(f"n_cell_types must be a positive integer, got {n_cell_types!r}.")
    try:
        low, high = (float(v) for v in library_size)
    except (TypeError, ValueError):
        raise ValueError(f"library_size must be a pair (low, high), got {library_size!r}.") from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise ValueError(f"library_size must satisfy 0 < low <= high (finite), got {library_size!r}.")
    if not (np.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a positive number, got {theta!r}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer with counts=True, got {seed!r}.")


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
