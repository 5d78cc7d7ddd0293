"""By-name data access of :mod:`hyfa.tl` and :mod:`hyfa.pl`: donor x gene matrices, donor presence, name checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from hyfa._access import donor_columns, layer_matrix
from hyfa._checks import preview

_MAX_LISTED = 10


def _format_names(names: Iterable, max_listed: int = _MAX_LISTED) -> str:
    """Return up to ``max_listed`` of ``names``, quoted, and how many there are (:func:`hyfa._checks.preview`)."""
    return preview(names, max_listed)


def _check_tissues(available: MuData | Sequence[str], tissues: Sequence[str], what: str = "tissue") -> None:
    """Raise a :class:`ValueError` naming the ``tissues`` not ``available`` (names, or a MuData's modalities)."""
    available = list(available.mod) if isinstance(available, MuData) else list(available)
    unknown = [t for t in tissues if t not in available]
    if unknown:
        raise ValueError(
            f"Unknown {what}(s): {_format_names(unknown)}. Available tissues: {_format_names(available)}."
        )


def _check_donors(mdata: MuData, donors: Sequence[str], what: str = "donors") -> None:
    """Raise a :class:`ValueError` if ``donors`` is empty, has duplicates or names donors absent from ``mdata``."""
    if len(donors) == 0:
        raise ValueError(f"No {what} given.")
    index = pd.Index(donors)
    if index.has_duplicates:
        raise ValueError(f"Duplicated {what}: {_format_names(index[index.duplicated()].unique())}.")
    missing = index.difference(mdata.obs_names, sort=False)
    if len(missing):
        raise ValueError(f"{what.capitalize()} not found in `mdata.obs_names`: {_format_names(missing)}.")


def _shared_genes(mdata: MuData, gene_mask_key: str | None = None) -> pd.Index:
    """Return the genes shared by every tissue (and flagged by ``var[gene_mask_key]`` in all), in first-tissue order."""
    if len(mdata.mod) == 0:
        raise ValueError("`mdata` has no modalities (tissues).")
    genes: pd.Index | None = None
    for tissue, adata in mdata.mod.items():
        names = adata.var_names
        if gene_mask_key is not None:
            if gene_mask_key not in adata.var.columns:
                raise KeyError(f"Column {gene_mask_key!r} not found in `mdata[{tissue!r}].var`.")
            mask = adata.var[gene_mask_key].to_numpy()
            if mask.dtype != bool:
                raise TypeError(
                    f"`mdata[{tissue!r}].var[{gene_mask_key!r}]` must be boolean, got dtype {mask.dtype}."
                )
            names = names[mask]
        genes = names if genes is None else genes[genes.isin(names)]
    assert genes is not None
    if genes.has_duplicates:
        raise ValueError(f"Duplicated gene names: {_format_names(genes[genes.duplicated()].unique())}.")
    if len(genes) == 0:
        raise ValueError(
            "No genes shared by all tissues"
            + (f" with `var[{gene_mask_key!r}]` set to True." if gene_mask_key is not None else ".")
        )
    return pd.Index(genes)


def _adata_matrix(
    adata: AnnData,
    donors: Sequence[str],
    genes: Sequence[str],
    layer: str | None = None,
    *,
    missing_donors: str = "nan",
    label: str = "adata",
) -> np.ndarray:
    """Return a dense ``float64`` donors x genes matrix of ``adata`` selected by obs and var NAME.

    Parameters
    ----------
    adata
        Donors x genes data.
    donors
        Donors (``obs_names``) to take, in this order.
    genes
        Genes (``var_names``) to take, in this order; all must be present.
    layer
        Layer to read; ``None`` reads ``.X``.
    missing_donors
        ``"nan"``: donors absent from ``adata`` get a row of NaN. ``"raise"``: raise a :class:`ValueError`.
    label
        How to refer to ``adata`` in error messages.
    """
    X = layer_matrix(adata, layer, label)
    if adata.obs_names.has_duplicates:
        raise ValueError(
            f"{label} has duplicated obs_names: {_format_names(adata.obs_names[adata.obs_names.duplicated()].unique())}."
        )
    if adata.var_names.has_duplicates:
        raise ValueError(
            f"{label} has duplicated var_names: {_format_names(adata.var_names[adata.var_names.duplicated()].unique())}."
        )
    donors = pd.Index(donors)
    genes = pd.Index(genes)
    cols = adata.var_names.get_indexer(genes)
    if (cols < 0).any():
        raise ValueError(f"Genes missing from {label}: {_format_names(genes[cols < 0])}.")
    rows = adata.obs_names.get_indexer(donors)
    present = rows >= 0
    if not present.all() and missing_donors == "raise":
        raise ValueError(f"Donors missing from {label}: {_format_names(donors[~present])}.")

    out = np.full((len(donors), len(genes)), np.nan, dtype=np.float64)
    if present.any():
        if sparse.issparse(X):
            block = sparse.csr_matrix(X[rows[present]])[:, cols].toarray()
        elif isinstance(X, np.ndarray):
            block = X[np.ix_(rows[present], cols)]
        else:  # e.g. backed or array-like storage
            block = np.asarray(X[rows[present]])[:, cols]
        out[present] = np.asarray(block, dtype=np.float64)
    return out


def _tissue_matrix(
    mdata: MuData,
    tissue: str,
    donors: Sequence[str],
    layer: str | None,
    genes: Sequence[str],
) -> np.ndarray:
    """Return the donors x genes ``float64`` matrix of ``tissue``, matched by name, with NaN rows for absent donors.

    Parameters
    ----------
    mdata
        Multi-tissue data; each modality is a tissue (donors x genes).
    tissue
        Modality to read.
    donors
        Donor names, in the order of the returned rows.
    layer
        Layer to read; ``None`` reads ``.X``.
    genes
        Gene names, in the order of the returned columns.
    """
    _check_tissues(mdata, [tissue])
    return _adata_matrix(mdata.mod[tissue], donors, genes, layer, label=f"`mdata[{tissue!r}]`")


def _presence(mdata: MuData, donors: Sequence[str], tissues: Sequence[str]) -> dict[str, np.ndarray]:
    """Return, per tissue of ``tissues``, a boolean mask over ``donors``: True where the donor was collected there."""
    index = pd.Index(donors)
    return {t: np.asarray(index.isin(mdata.mod[t].obs_names)) for t in tissues}


def _donors_with_all(mdata: MuData, tissues: Sequence[str], donors: Sequence[str]) -> np.ndarray:
    """Return a boolean mask over ``donors``: True where the donor is observed in every one of ``tissues``."""
    mask = np.ones(len(donors), dtype=bool)
    for present in _presence(mdata, donors, tissues).values():
        mask &= present
    return mask


def _donor_obs(mdata: MuData, donors: Sequence[str]) -> pd.DataFrame:
    """Return the donor-level columns of ``mdata.obs`` for ``donors`` (no ``"tissue:..."`` nor ``"_..."``)."""
    return mdata.obs.loc[list(donors), donor_columns(mdata.obs)]


def _covariate_matrix(
    mdata: MuData,
    donors: Sequence[str],
    keys: Sequence[str] | None,
    categories: dict[str, list] | None = None,
) -> tuple[np.ndarray, dict[str, list]]:
    """Return donor covariates from ``mdata.obs`` as a float matrix (categoricals one-hot encoded).

    Parameters
    ----------
    mdata
        Multi-tissue data whose global ``.obs`` holds the covariates.
    donors
        Donor names, in the order of the returned rows.
    keys
        Columns of ``mdata.obs``; ``None`` or empty gives a ``(n_donors, 0)`` matrix.
    categories
        Categories per categorical key, as returned by a previous call (e.g. at fit time), so that the
        one-hot encoding is identical at prediction time. ``None`` learns them from ``donors``.

    Returns
    -------
    The ``(n_donors, n_features)`` matrix and the categories used for each categorical key.
    """
    keys = list(keys or [])
    learn = categories is None
    categories = {} if categories is None else dict(categories)
    if not keys:
        return np.zeros((len(donors), 0), dtype=np.float64), categories
    missing = [k for k in keys if k not in mdata.obs.columns]
    if missing:
        raise KeyError(f"Covariate(s) {_format_names(missing)} not found in `mdata.obs`.")
    obs = mdata.obs.loc[list(donors), keys]
    blocks = []
    for key in keys:
        col = obs[key]
        if col.isna().any():
            raise ValueError(
                f"Covariate {key!r} is missing for donors: {_format_names(col.index[col.isna()])}."
            )
        is_numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if is_numeric and key not in categories:
            blocks.append(col.to_numpy(dtype=np.float64)[:, None])
            continue
        if learn:
            cats = list(col.astype("category").cat.categories)
            categories[key] = cats
        cats = categories[key]
        codes = pd.Categorical(col, categories=cats).codes
        onehot = np.zeros((len(col), len(cats)), dtype=np.float64)
        known = codes >= 0
        onehot[np.flatnonzero(known), codes[known]] = 1.0
        blocks.append(onehot)
    return np.hstack(blocks), categories
