"""Cell-type signatures: single-cell counts summed per (donor, tissue, cell type), after gene selection."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from hyfa._checks import preview

logger = logging.getLogger(__name__)

_MAX_LISTED = 5
_CHUNK_ROWS = 65_536  # cells summed at once, to bound the float64 copy of the counts
_FLOAT32_EXACT = 2**24  # largest integer below which every integer is exact in float32
_SEPARATOR = "|"


def aggregate_signatures(
    adata: AnnData,
    donor_key: str = "donor",
    tissue_key: str = "tissue",
    cell_type_key: str = "cell_type",
    layer: str | None = None,
    min_profiles: int = 10,
    n_top_genes: int | None = 3000,
    genes: Sequence[str] | None = None,
) -> AnnData:
    r"""Return cell-type signatures, the counts of a cell type's cells in a donor's tissue summed per gene.

    This is the single-nucleus preprocessing of HYFA :cite:p:`Vinas2023`:

    1. Keep the genes ``genes`` (e.g. those measured in bulk), when given.
    2. Select the ``n_top_genes`` most variable genes with
       :func:`scanpy.pp.highly_variable_genes` (``flavor="seurat_v3"``, on all cells' raw counts,
       without batches); with ``n_top_genes=None``, or at least as many as there are genes, keep
       every gene.
    3. Drop the cell types observed in fewer than ``min_profiles`` (donor, tissue) combinations,
       with a warning naming them.
    4. Sum the counts of the remaining cells per (donor, tissue, cell type), which gives the
       signature :math:`x_i^{(k,q)}` of the paper.

    Sums are exact (accumulated in ``float64``). ``adata`` is not modified, and sparse counts are
    summed in chunks of cells without densifying the cells x genes matrix.

    Parameters
    ----------
    adata
        One row per cell with raw counts (finite, non-negative integers) in ``.X`` or ``layer``,
        dense or sparse.
    donor_key
        Column of ``adata.obs`` with the cells' donors.
    tissue_key
        Column of ``adata.obs`` with the cells' tissues.
    cell_type_key
        Column of ``adata.obs`` with the cells' cell types.
    layer
        Layer with the counts, instead of ``.X``.
    min_profiles
        Minimum number of (donor, tissue) combinations in which a cell type must have cells to be
        kept.
    n_top_genes
        Number of highly variable genes to keep; ``None`` keeps every gene.
    genes
        Genes to restrict to before the selection of highly variable genes; all genes by default.

    Returns
    -------
    One row per (donor, tissue, cell type) with at least one cell, named ``"donor|tissue|cell_type"``
    and ordered by donor, tissue and cell type (categories' order for categorical columns, else
    sorted). Genes keep their order in ``adata``.

    - ``.X``: the summed counts, dense, ``float32`` (``float64`` if a sum exceeds :math:`2^{24}`,
      above which ``float32`` is not exact);
    - ``.obs["donor"]``, ``.obs["tissue"]``, ``.obs["cell_type"]``: categoricals (always these names,
      whatever the keys);
    - ``.obs["n_cells"]``: the number of cells summed;
    - ``.obs["library_size"]``: their mean total counts over the kept genes, so that a row sums to
      ``n_cells * library_size``;
    - ``.var``: ``adata.var`` of the kept genes, with ``"highly_variable_rank"``, ``"means"``,
      ``"variances"`` and ``"variances_norm"`` from scanpy when genes were selected;
    - ``.uns["aggregate_signatures"]``: the arguments, ``"profiles_per_cell_type"`` (number of
      (donor, tissue) combinations of every cell type) and ``"dropped_cell_types"``.

    Examples
    --------
    >>> import hyfa
    >>> observed, truth = hyfa.data.simulate(n_donors=60, counts=True, seed=1)
    >>> cells, _ = hyfa.data.simulate_single_cell(truth, seed=1)
    >>> signatures = hyfa.pp.aggregate_signatures(cells, n_top_genes=None)
    >>> signatures.obs.columns.tolist()
    ['donor', 'tissue', 'cell_type', 'n_cells', 'library_size']
    >>> bool(signatures.X.sum() == cells.X.sum())
    True
    """
    if not isinstance(adata, AnnData):
        raise TypeError(f"aggregate_signatures expects an AnnData of cells, got {type(adata).__name__}.")
    _check_parameters(min_profiles, n_top_genes)
    keys = {"donor": donor_key, "tissue": tissue_key, "cell_type": cell_type_key}
    labels = {name: _labels(adata, key) for name, key in keys.items()}
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata has no layer {layer!r}; layers: {list(adata.layers)}.")
    counts = adata.X if layer is None else adata.layers[layer]
    if counts is None:
        raise ValueError("adata.X is empty; pass the layer holding the counts.")
    where = "adata.X" if layer is None else f"adata.layers[{layer!r}]"

    columns = np.arange(adata.n_vars)
    if genes is not None:
        columns = _gene_columns(adata.var_names, genes)
    if adata.n_obs == 0 or len(columns) == 0:
        raise ValueError(
            f"adata has {adata.n_obs} cells and {len(columns)} genes to aggregate; need at least one."
        )
    if len(columns) < adata.n_vars:
        counts = counts[:, columns]
    _check_cell_counts(counts, adata.obs_names, adata.var_names[columns], where)

    hvg = None
    if n_top_genes is not None and n_top_genes < len(columns):
        hvg = _highly_variable(counts, adata.var_names[columns], n_top_genes)
        keep = np.flatnonzero(hvg["highly_variable"].to_numpy())
        columns, counts = columns[keep], counts[:, keep]

    # One group per (donor, tissue, cell type) present; cell types in too few (donor, tissue) pairs dropped.
    codes, values = {}, {}
    for name, series in labels.items():
        codes[name], values[name] = _codes(series)
    sizes = [len(values[name]) for name in keys]
    group = np.ravel_multi_index((codes["donor"], codes["tissue"], codes["cell_type"]), sizes)
    present, cell_group = np.unique(group, return_inverse=True)
    d_idx, t_idx, c_idx = np.unravel_index(present, sizes)
    profiles = pd.Series(np.bincount(c_idx, minlength=sizes[2]), index=values["cell_type"])
    profiles = profiles[profiles > 0]
    dropped = profiles[profiles < min_profiles]
    if len(dropped):
        message = (
            f"Dropping {len(dropped)} of {len(profiles)} cell types observed in fewer than "
            f"min_profiles={min_profiles} (donor, tissue) combinations: "
            + ", ".join(f"{name!r} ({n})" for name, n in dropped.items())
            + "."
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    kept_type = ~np.isin(values["cell_type"][c_idx], dropped.index)
    if not kept_type.any():
        raise ValueError(
            f"No cell type is observed in at least min_profiles={min_profiles} (donor, tissue) combinations; "
            f"profiles per cell type: {profiles.to_dict()}."
        )
    new_index = np.cumsum(kept_type) - 1
    cell_group = np.where(kept_type[cell_group], new_index[cell_group], -1)
    d_idx, t_idx, c_idx = d_idx[kept_type], t_idx[kept_type], c_idx[kept_type]

    summed, n_cells = _sum_by_group(counts, cell_group, len(d_idx))
    if summed.size and summed.max() > _FLOAT32_EXACT:
        logger.info("Signature sums exceed 2**24; keeping them as float64 so that they stay exact.")
    else:
        summed = summed.astype(np.float32)
    donor, tissue, cell_type = values["donor"][d_idx], values["tissue"][t_idx], values["cell_type"][c_idx]
    names = [_SEPARATOR.join(map(str, row)) for row in zip(donor, tissue, cell_type, strict=True)]
    index = pd.Index(names)
    if index.has_duplicates:
        raise ValueError(
            f"Signature names {preview(index[index.duplicated()].unique())} repeat because labels contain "
            f"{_SEPARATOR!r}; rename those donors, tissues or cell types."
        )
    obs = pd.DataFrame(
        {
            "donor": _category(donor, values["donor"]),
            "tissue": _category(tissue, values["tissue"]),
            "cell_type": _category(cell_type, values["cell_type"]),
            "n_cells": n_cells,
            "library_size": summed.sum(axis=1, dtype=np.float64) / n_cells,
        },
        index=index,
    )
    var = adata.var.iloc[columns].copy()
    if hvg is not None:
        for column in ("highly_variable_rank", "means", "variances", "variances_norm"):
            var[column] = hvg[column].to_numpy()[keep]
    uns = {
        "donor_key": donor_key,
        "tissue_key": tissue_key,
        "cell_type_key": cell_type_key,
        "layer": "X" if layer is None else layer,
        "min_profiles": int(min_profiles),
        "n_top_genes": -1 if n_top_genes is None else int(n_top_genes),
        "flavor": "seurat_v3" if hvg is not None else "none (all genes kept)",
        "profiles_per_cell_type": {str(k): int(v) for k, v in profiles.items()},
        "dropped_cell_types": [str(k) for k in dropped.index],
    }
    logger.info(
        "Aggregated %d cells into %d signatures of %d cell types and %d genes.",
        int(n_cells.sum()),
        len(obs),
        obs["cell_type"].nunique(),
        len(columns),
    )
    return AnnData(X=summed, obs=obs, var=var, uns={"aggregate_signatures": uns})


def _check_cell_counts(X, obs_names: Sequence[str], var_names: Sequence[str], where: str) -> None:
    """Raise a :class:`ValueError` unless ``X`` holds finite, non-negative integer counts, naming a cell and gene.

    Dense matrices are checked in chunks of rows and sparse ones through their stored values, so no
    dense copy of ``X`` is made.

    Parameters
    ----------
    X
        Cells x genes matrix, dense or sparse.
    obs_names
        Cell names, used in the error message.
    var_names
        Gene names, used in the error message.
    where
        What ``X`` is, e.g. ``"adata.X"``, used in the error message.
    """
    if sparse.issparse(X):
        values = X.data
        if values.dtype.kind not in "biuf":
            raise ValueError(f"{where}: counts must be numeric, got dtype {values.dtype}.")
        for what, test in _TESTS:
            if values.dtype.kind != "f" and what != "negative":
                continue
            if test(values).any():  # error path only: locate the offending cells and genes
                coo = sparse.coo_matrix(X)
                bad = np.flatnonzero(test(coo.data))
                _raise(where, what, len(bad), coo.row[bad], coo.col[bad], coo.data[bad], obs_names, var_names)
        return
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: counts must be numeric, got dtype {X.dtype}.")
    for what, test in _TESTS:
        if X.dtype.kind != "f" and what != "negative":
            continue
        n_bad, rows, cols = 0, [], []
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            chunk = X[start : start + _CHUNK_ROWS]
            r, c = np.nonzero(test(chunk))
            n_bad += len(r)
            if len(rows) < _MAX_LISTED:
                rows.extend((r + start)[: _MAX_LISTED - len(rows)])
                cols.extend(c[: _MAX_LISTED - len(cols)])
        if n_bad:
            rows, cols = np.asarray(rows), np.asarray(cols)
            _raise(where, what, n_bad, rows, cols, X[rows, cols], obs_names, var_names)


def _nonfinite(v: np.ndarray) -> np.ndarray:
    return ~np.isfinite(v)


def _negative(v: np.ndarray) -> np.ndarray:
    return v < 0


def _noninteger(v: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v != np.round(v))


_TESTS = (("NaN or infinite", _nonfinite), ("negative", _negative), ("non-integer", _noninteger))


def _raise(where, what, n_bad, rows, cols, values, obs_names, var_names) -> None:
    """Raise a :class:`ValueError` naming up to a few (cell, gene) pairs with bad counts."""
    pairs = [
        f"{obs_names[r]}/{var_names[c]}={v.item()!r}"
        for r, c, v in zip(rows[:_MAX_LISTED], cols[:_MAX_LISTED], values[:_MAX_LISTED], strict=True)
    ]
    raise ValueError(
        f"{where} has {n_bad} {what} counts (expected finite, non-negative integer counts), "
        f"e.g. cell/gene {', '.join(pairs)}."
    )


def _sum_by_group(counts, cell_group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the groups x genes ``float64`` sums of the cells' counts and the cells per group.

    Cells with group ``-1`` are skipped. The sums are sparse indicator products over chunks of cells.
    """
    if sparse.issparse(counts) and counts.format != "csr":
        counts = sparse.csr_matrix(counts)  # row chunks of CSC or COO would be slow
    kept = cell_group >= 0
    n_cells = np.bincount(cell_group[kept], minlength=n_groups).astype(np.int64)
    summed = np.zeros((n_groups, counts.shape[1]), dtype=np.float64)
    for start in range(0, counts.shape[0], _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, counts.shape[0])
        groups = cell_group[start:stop]
        rows = np.flatnonzero(groups >= 0)
        if not len(rows):
            continue
        indicator = sparse.csr_matrix(
            (np.ones(len(rows)), (groups[rows], rows)), shape=(n_groups, stop - start)
        )
        chunk = counts[start:stop]
        if sparse.issparse(chunk):
            summed += np.asarray((indicator @ sparse.csr_matrix(chunk, dtype=np.float64)).todense())
        else:
            summed += indicator @ np.asarray(chunk, dtype=np.float64)
    return summed, n_cells


def _highly_variable(counts, var_names: pd.Index, n_top_genes: int) -> pd.DataFrame:
    """Return scanpy's seurat_v3 highly-variable-gene table of the counts (a new AnnData, never the input)."""
    import scanpy as sc

    view = AnnData(X=counts, var=pd.DataFrame(index=var_names.copy()))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expects raw count data.*", category=UserWarning)
        return sc.pp.highly_variable_genes(view, flavor="seurat_v3", n_top_genes=n_top_genes, inplace=False)


def _labels(adata: AnnData, key: str) -> pd.Series:
    """Return ``adata.obs[key]``, raising a :class:`KeyError` naming ``key`` or a :class:`ValueError` on missing labels."""
    if key not in adata.obs.columns:
        raise KeyError(f"adata.obs has no column {key!r}; columns: {list(adata.obs.columns)}.")
    series = adata.obs[key]
    missing = series.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"adata.obs[{key!r}] is missing for {int(missing.sum())} cells, e.g. {preview(adata.obs_names[missing])}."
        )
    return series


def _codes(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Return integer codes of ``series`` and its values: categories' order if categorical, else sorted."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy().astype(np.int64), np.asarray(series.cat.categories, dtype=object)
    values, codes = np.unique(series.to_numpy(), return_inverse=True)
    return codes.astype(np.int64), np.asarray(values, dtype=object)


def _category(values: np.ndarray, order: np.ndarray) -> pd.Categorical:
    """Return ``values`` as a categorical of the present values, in ``order``."""
    present = set(values)
    return pd.Categorical(values, categories=[v for v in order if v in present])


def _gene_columns(var_names: pd.Index, genes: Sequence[str]) -> np.ndarray:
    """Return the sorted positions of ``genes`` in ``var_names``, raising a :class:`KeyError` for absent ones."""
    genes = pd.Index([genes] if isinstance(genes, str) else list(genes)).unique()
    positions = var_names.get_indexer(genes)
    if (positions < 0).any():
        raise KeyError(f"genes not in adata.var_names: {preview(genes[positions < 0])}.")
    return np.sort(positions)


def _check_parameters(min_profiles, n_top_genes) -> None:
    """Raise a :class:`ValueError` naming the first invalid parameter of :func:`aggregate_signatures`."""
    if not isinstance(min_profiles, int | np.integer) or isinstance(min_profiles, bool) or min_profiles < 0:
        raise ValueError(f"min_profiles must be a non-negative integer, got {min_profiles!r}.")
    if n_top_genes is not None and (
        not isinstance(n_top_genes, int | np.integer) or isinstance(n_top_genes, bool) or n_top_genes < 1
    ):
        raise ValueError(f"n_top_genes must be a positive integer or None, got {n_top_genes!r}.")
