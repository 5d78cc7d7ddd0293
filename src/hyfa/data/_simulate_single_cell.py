"""Simulated single-cell counts paired with :func:`hyfa.data.simulate` bulk counts, with true cell-type signatures."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse as sp

from ._simulate import cell_type_programs

_CELL_FRACTION_CONCENTRATION = 20.0  # Dirichlet concentration of a sample's cell-type fractions around w_t
_CELL_TYPE_DEPTH_SD = 0.3  # log-scale spread of the cell types' typical library sizes
_CELL_DEPTH_SD = 0.3  # log-scale spread of the cells' library sizes around their sample and cell type


def simulate_single_cell(
    truth: MuData,
    held_out_tissues: int | Sequence[str] = 1,
    donor_fraction: float = 0.3,
    sample_rate: float = 0.5,
    cells_per_sample: tuple[int, int] = (50, 500),
    library_size: tuple[float, float] = (500.0, 5000.0),
    theta: float = 5.0,
    n_extra_genes: int = 10,
    n_bulk_only_genes: int = 5,
    donors: Sequence[str] | None = None,
    sparse: bool = True,
    seed: int = 0,
) -> tuple[AnnData, AnnData]:
    r"""Return simulated single-cell counts of some donors and tissues of ``truth``, and the true signatures.

    The cells are drawn from the cell types that make up the bulk counts of
    :func:`hyfa.data.simulate` with ``counts=True``, as in the paired bulk and single-nucleus data
    of :cite:p:`Vinas2023`. Cell type ``c`` of donor ``i`` in tissue ``t`` has gene proportions
    :math:`p_{itc} \propto \exp(\mu_{it} + f_c(u_i) + m_c)`: the tissue's effect :math:`\mu_{it}`
    (also in the bulk, so known for every tissue), and a program of the donor's factors
    :math:`f_c(u_i)` with marker offsets :math:`m_c`, shared by all tissues. A model that learns
    donor and tissue representations from bulk can therefore predict the signatures of donors
    and tissues without cells.

    The single-cell genes overlap the bulk genes partially: the last ``n_bulk_only_genes`` bulk genes
    are not measured, and ``n_extra_genes`` new genes (named after the bulk genes, ``"gene_40"``,
    ... for 40 bulk genes) are. A new gene has its own program and markers and the tissue effect of a
    random bulk gene (co-regulation), so tissue effects on it are known from bulk too.

    Sampling:

    1. The last ``held_out_tissues`` tissues (or the named ones) get no cells at all. A random
       ``donor_fraction`` of the donors (or ``donors``) give cells, each in every other tissue with
       probability ``sample_rate`` (at least one tissue per donor and one donor per tissue).
    2. A sample has a log-uniform number of cells in ``cells_per_sample``, split among cell types
       by a multinomial draw with Dirichlet fractions around the tissue's fractions
       :math:`w_{tc}` (concentration 20), so the number of cells per (donor, tissue, cell type)
       varies and is sometimes 0.
    3. A cell's library size is log-normal: a log-uniform sample depth in ``library_size``, times
       a cell-type factor (log-scale s.d. 0.3), times a cell factor (log-scale s.d. 0.3). Its counts
       are negative binomial with mean library size times :math:`p_{itc}` and inverse dispersion
       ``theta``, drawn as a gamma-Poisson mixture.

    Parameters
    ----------
    truth
        The ground truth returned by :func:`hyfa.data.simulate` with ``counts=True``.
    held_out_tissues
        Number of tissues, taken from the end of ``truth``'s tissues, or names of tissues, without
        any cells.
    donor_fraction
        Fraction of the donors, chosen at random, that give cells (ignored with ``donors``).
    sample_rate
        Probability that a donor gives cells in a tissue that is not held out.
    cells_per_sample
        Range ``(low, high)`` of the number of cells of a (donor, tissue) sample, drawn log-uniformly.
    library_size
        Range ``(low, high)`` of the samples' typical library size of a cell, drawn log-uniformly.
    theta
        Inverse dispersion of the cells' negative-binomial counts.
    n_extra_genes
        Number of genes measured in single cells but not in bulk.
    n_bulk_only_genes
        Number of bulk genes, the last ones, not measured in single cells.
    donors
        Donors that give cells, instead of a random ``donor_fraction``.
    sparse
        Whether the cells' ``.X`` is a :class:`scipy.sparse.csr_matrix` (else a dense array).
    seed
        Seed of the :func:`numpy.random.default_rng` generator of the sampling; the true
        proportions depend only on ``truth``.

    Returns
    -------
    ``(cells, signatures)``:

    - ``cells``: one row per cell (``"cell_0"``, ...), grouped by sample; ``.X`` integer counts
      (``float32``); ``.obs["donor"]``, ``.obs["tissue"]``, ``.obs["cell_type"]`` (categoricals with
      the values present, in ``truth``'s order) and ``.obs["library_size"]``, the cell's expected
      library size.
    - ``signatures``: the truth, one row ``"donor|tissue|cell_type"`` per combination of ALL donors,
      tissues and cell types (donor-major order, as :func:`hyfa.pp.aggregate_signatures` names
      them); ``.X`` the true gene proportions :math:`p_{itc}` (``float32``, rows sum to 1);
      ``.layers["mean"]`` the expected summed counts of the simulated cells (the sum of their
      library sizes times :math:`p_{itc}`, 0 without cells); ``.obs`` holds ``donor``,
      ``tissue``, ``cell_type`` (categoricals of all values), ``n_cells`` (simulated cells),
      ``library_size`` (mean observed total counts of those cells, NaN without cells), ``has_cells``
      and ``held_out_tissue`` (booleans).

    Both have ``.var["in_bulk"]`` (whether the gene is a bulk gene) and the same
    ``.uns["simulate_single_cell"]``: the arguments and ``"held_out_tissues"``,
    ``"tissues_with_cells"``, ``"donors_with_cells"`` and ``"samples"`` (the ``"donor|tissue"`` pairs
    with cells), lists of names in ``truth``'s order.

    Examples
    --------
    >>> import hyfa
    >>> observed, truth = hyfa.data.simulate(n_donors=60, counts=True, seed=1)
    >>> cells, signatures = hyfa.data.simulate_single_cell(truth, seed=1)
    >>> cells.uns["simulate_single_cell"]["held_out_tissues"]
    ['tissue_9']
    >>> signatures.n_obs == 60 * 10 * 4
    True
    """
    params = _check_truth(truth)
    tissues = list(truth.mod)
    all_donors = truth.obs_names
    held_out = _held_out(held_out_tissues, tissues)
    _check_arguments(donor_fraction, sample_rate, cells_per_sample, library_size, theta, seed)
    n_bulk_genes = truth.mod[tissues[0]].n_vars
    for name, value, limit in (
        ("n_extra_genes", n_extra_genes, None),
        ("n_bulk_only_genes", n_bulk_only_genes, n_bulk_genes - 1),
    ):
        if not isinstance(value, int | np.integer) or value < 0 or (limit is not None and value > limit):
            bound = "" if limit is None else f" at most {limit} (keep a bulk gene)"
            raise ValueError(f"{name} must be a non-negative integer{bound}, got {value!r}.")
    rng = np.random.default_rng(seed)

    # True proportions of every (tissue, cell type, donor) over the single-cell genes.
    bulk_genes = truth.mod[tissues[0]].var_names
    programs = cell_type_programs(
        params["seed"], params["n_latent"], params["n_cell_types"], len(tissues), n_bulk_genes
    )
    if not np.allclose(programs.fractions, np.asarray(params["cell_type_fractions"])):
        raise ValueError(
            "truth was not made by this version of hyfa.data.simulate: its cell-type fractions differ."
        )
    n_shared = n_bulk_genes - n_bulk_only_genes
    sc_programs, tissue_columns = programs.single_cell_genes(params["seed"], n_shared, n_extra_genes)
    genes = bulk_genes[:n_shared].append(pd.Index([f"gene_{n_bulk_genes + k}" for k in range(n_extra_genes)]))
    u = np.asarray(truth.obsm["factors"], dtype=np.float64)
    proportions = np.stack(  # tissues x cell types x donors x genes
        [
            np.exp(sc_programs.log_proportions(u, _tissue_effect(truth.mod[t])[:, tissue_columns]))
            for t in tissues
        ]
    )
    n_cell_types = params["n_cell_types"]
    cell_types = list(params["cell_types"])

    # Which (donor, tissue) samples have cells.
    sc_tissues = [t for t in tissues if t not in held_out]
    sc_donors = _donors(donors, donor_fraction, all_donors, rng)
    donor_pos = all_donors.get_indexer(sc_donors)
    tissue_pos = np.array([tissues.index(t) for t in sc_tissues])
    grid = rng.random((len(donor_pos), len(tissue_pos))) < sample_rate
    for row in np.flatnonzero(~grid.any(axis=1)):
        grid[row, rng.integers(len(tissue_pos))] = True
    for col in np.flatnonzero(~grid.any(axis=0)):
        grid[rng.integers(len(donor_pos)), col] = True

    # Cells, sample by sample.
    depth_of_type = np.exp(rng.normal(0.0, _CELL_TYPE_DEPTH_SD, size=n_cell_types))
    n_cells = np.zeros((len(tissues), n_cell_types, len(all_donors)), dtype=np.int64)
    library_sum = np.zeros_like(n_cells, dtype=np.float64)
    total_sum = np.zeros_like(library_sum)
    blocks, cell_obs = [], []
    log_cells = np.log(cells_per_sample)
    log_depth = np.log(library_size)
    for r, c in zip(*np.nonzero(grid), strict=True):
        i, t = donor_pos[r], tissue_pos[c]
        n_sample = int(round(np.exp(rng.uniform(*log_cells))))
        fractions = rng.dirichlet(_CELL_FRACTION_CONCENTRATION * programs.fractions[t] + 1e-3)
        per_type = rng.multinomial(n_sample, fractions)
        depth = np.exp(rng.uniform(*log_depth))
        for q in np.flatnonzero(per_type):
            n = per_type[q]
            lib = depth * depth_of_type[q] * np.exp(rng.normal(0.0, _CELL_DEPTH_SD, size=n))
            mean = lib[:, None] * proportions[t, q, i][None, :]
            x = rng.poisson(rng.gamma(theta, mean / theta)).astype(np.float32)
            n_cells[t, q, i] = n
            library_sum[t, q, i] = lib.sum()
            total_sum[t, q, i] = x.sum(dtype=np.float64)
            blocks.append(sp.csr_matrix(x) if sparse else x)
            cell_obs.append((n, i, t, q, lib))
    X = sp.vstack(blocks, format="csr", dtype=np.float32) if sparse else np.vstack(blocks)
    donor_idx = np.concatenate([np.full(n, i) for n, i, _, _, _ in cell_obs])
    tissue_idx = np.concatenate([np.full(n, t) for n, _, t, _, _ in cell_obs])
    type_idx = np.concatenate([np.full(n, q) for n, _, _, q, _ in cell_obs])
    obs = pd.DataFrame(
        {
            "donor": _categorical(all_donors[donor_idx], all_donors),
            "tissue": _categorical(np.asarray(tissues)[tissue_idx], tissues),
            "cell_type": _categorical(np.asarray(cell_types)[type_idx], cell_types),
            "library_size": np.concatenate([lib for *_, lib in cell_obs]),
        },
        index=pd.Index([f"cell_{k}" for k in range(X.shape[0])]),
    )
    var = pd.DataFrame({"in_bulk": np.arange(len(genes)) < n_shared}, index=genes)

    samples = [
        f"{all_donors[donor_pos[r]]}|{tissues[tissue_pos[c]]}" for r, c in zip(*np.nonzero(grid), strict=True)
    ]
    uns = {
        "truth_seed": int(params["seed"]),
        "donor_fraction": float(donor_fraction),
        "sample_rate": float(sample_rate),
        "cells_per_sample": [int(v) for v in cells_per_sample],
        "library_size": [float(v) for v in library_size],
        "theta": float(theta),
        "n_extra_genes": int(n_extra_genes),
        "n_bulk_only_genes": int(n_bulk_only_genes),
        "seed": int(seed),
        "held_out_tissues": [t for t in tissues if t in held_out],
        "tissues_with_cells": [t for t in tissues if (n_cells[tissues.index(t)] > 0).any()],
        "donors_with_cells": [d for k, d in enumerate(all_donors) if (n_cells[:, :, k] > 0).any()],
        "samples": samples,  # donor-major, in truth's order
    }
    cells = AnnData(X=X, obs=obs, var=var.copy(), uns={"simulate_single_cell": copy.deepcopy(uns)})
    return cells, _signatures(
        proportions, n_cells, library_sum, total_sum, all_donors, tissues, cell_types, held_out, var, uns
    )


def _signatures(
    proportions, n_cells, library_sum, total_sum, donors, tissues, cell_types, held_out, var, uns
):
    """Return the truth AnnData, one row per (donor, tissue, cell type) in donor-major order."""
    # tissues x cell types x donors -> donors x tissues x cell types
    order = (2, 0, 1)
    n_rows = len(donors) * len(tissues) * len(cell_types)
    props = proportions.transpose(*order, 3).reshape(n_rows, -1)
    n = n_cells.transpose(order).reshape(-1)
    lib = library_sum.transpose(order).reshape(-1)
    total = total_sum.transpose(order).reshape(-1)
    d_idx, t_idx, c_idx = (a.reshape(-1) for a in np.indices(n_cells.transpose(order).shape))
    donor = np.asarray(donors)[d_idx]
    tissue = np.asarray(tissues)[t_idx]
    cell_type = np.asarray(cell_types)[c_idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_library = np.where(n > 0, total / np.maximum(n, 1), np.nan)
    obs = pd.DataFrame(
        {
            "donor": pd.Categorical(donor, categories=list(donors)),
            "tissue": pd.Categorical(tissue, categories=tissues),
            "cell_type": pd.Categorical(cell_type, categories=cell_types),
            "n_cells": n,
            "library_size": mean_library,
            "has_cells": n > 0,
            "held_out_tissue": np.isin(tissue, list(held_out)),
        },
        index=pd.Index([f"{d}|{t}|{c}" for d, t, c in zip(donor, tissue, cell_type, strict=True)]),
    )
    return AnnData(
        X=props.astype(np.float32),
        obs=obs,
        var=var.copy(),
        layers={"mean": (lib[:, None] * props).astype(np.float32)},
        uns={"simulate_single_cell": uns},
    )


def _tissue_effect(adata: AnnData) -> np.ndarray:
    """Return a tissue's donors x bulk genes effect on log expression, stored by :func:`simulate`."""
    return np.asarray(adata.layers["tissue_effect"], dtype=np.float64)


def _categorical(values, order) -> pd.Categorical:
    """Return ``values`` as a categorical whose categories are the present values, in ``order``."""
    present = set(values)
    return pd.Categorical(values, categories=[v for v in order if v in present])


def _check_truth(truth) -> dict:
    """Return ``truth.uns["simulate"]``, raising if ``truth`` is not a count truth of :func:`simulate`."""
    if not isinstance(truth, MuData):
        raise TypeError(
            f"truth must be the MuData returned by hyfa.data.simulate, got {type(truth).__name__}."
        )
    params = truth.uns.get("simulate", {})
    if not params.get("counts", False):
        raise ValueError(
            "truth must come from hyfa.data.simulate(..., counts=True), which defines the cell types."
        )
    if "factors" not in truth.obsm:
        raise ValueError("truth.obsm['factors'] is missing; pass the truth returned by hyfa.data.simulate.")
    for tissue, adata in truth.mod.items():
        if "tissue_effect" not in adata.layers:
            raise ValueError(
                f"truth[{tissue!r}].layers['tissue_effect'] is missing; pass the unmodified truth."
            )
    return params


def _held_out(held_out_tissues, tissues: list[str]) -> list[str]:
    """Return the names of the held-out tissues, raising on an invalid ``held_out_tissues``."""
    if isinstance(held_out_tissues, int | np.integer):
        if not 0 <= held_out_tissues < len(tissues):
            raise ValueError(
                f"held_out_tissues must be between 0 and {len(tissues) - 1} (leave a tissue with cells), "
                f"got {held_out_tissues!r}."
            )
        return tissues[len(tissues) - held_out_tissues :]
    names = [held_out_tissues] if isinstance(held_out_tissues, str) else list(held_out_tissues)
    unknown = [t for t in names if t not in tissues]
    if unknown:
        raise ValueError(f"held_out_tissues {unknown!r} are not tissues of truth ({tissues!r}).")
    if len(set(names)) >= len(tissues):
        raise ValueError("held_out_tissues must leave at least one tissue with cells.")
    return [t for t in tissues if t in names]


def _donors(donors, donor_fraction, all_donors: pd.Index, rng) -> list[str]:
    """Return the donors that give cells, in ``all_donors`` order."""
    if donors is not None:
        names = [donors] if isinstance(donors, str) else list(donors)
        unknown = [d for d in names if d not in all_donors]
        if unknown:
            raise ValueError(f"donors {unknown[:5]!r} are not donors of truth.")
        if not names:
            raise ValueError("donors must name at least one donor.")
        return [d for d in all_donors if d in set(names)]
    n = max(1, int(round(donor_fraction * len(all_donors))))
    chosen = np.sort(rng.choice(len(all_donors), size=n, replace=False))
    return list(all_donors[chosen])


def _check_arguments(donor_fraction, sample_rate, cells_per_sample, library_size, theta, seed) -> None:
    """Raise a :class:`ValueError` naming the first invalid argument of :func:`simulate_single_cell`."""
    if not 0 < donor_fraction <= 1:
        raise ValueError(f"donor_fraction must be in (0, 1], got {donor_fraction!r}.")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}.")
    for name, pair, lowest in (
        ("cells_per_sample", cells_per_sample, "1 <="),
        ("library_size", library_size, "0 <"),
    ):
        try:
            low, high = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a pair (low, high), got {pair!r}.") from None
        valid_low = low >= 1 if lowest == "1 <=" else low > 0
        if not (np.isfinite(low) and np.isfinite(high) and valid_low and low <= high):
            raise ValueError(f"{name} must satisfy {lowest} low <= high (finite), got {pair!r}.")
    if not (np.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a positive number, got {theta!r}.")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
