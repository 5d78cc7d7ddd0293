"""Converting between the long format (samples x genes, donor and tissue in ``.obs``) and a MuData of tissues."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import sparse

from hyfa._checks import duplicates, preview
from hyfa._utils import as_list as _as_list

from ._mudata import build_mudata

logger = logging.getLogger(__name__)


def from_long(
    adata: AnnData,
    donor_key: str,
    tissue_key: str,
    donor_obs_keys: Iterable[str] | None = None,
    sample_key: str = "sample_id",
) -> MuData:
    """Return a MuData with one modality per tissue from samples x genes data in the long format.

    The long format, used by the reference implementation of :cite:p:`Vinas2023`, is a single
    AnnData of samples x genes whose ``.obs`` names each sample's donor and tissue.
    ``adata`` is not modified.

    Parameters
    ----------
    adata
        Samples x genes data; each (donor, tissue) pair must occur at most once.
    donor_key
        Column of ``adata.obs`` with the donor of each sample.
    tissue_key
        Column of ``adata.obs`` with the tissue of each sample.
    donor_obs_keys
        Columns of ``adata.obs`` that describe donors (e.g. age, sex): they must be constant
        within each donor and go to ``mdata.obs`` instead of the modalities.
    sample_key
        Column of each modality's ``.obs`` that receives the sample names (``adata.obs_names``).

    Returns
    -------
    MuData with one modality per tissue and donors as ``obs_names``, holding the samples' ``.X``,
    layers and remaining ``.obs`` columns, and ``adata.var`` in every modality. Tissues (and the
    donors of ``mdata.obs_names``) come in category order where ``tissue_key`` (``donor_key``) is
    categorical, else sorted.
    """
    donor_obs_keys = _as_list(donor_obs_keys) or []
    obs = adata.obs
    for key, role in [(donor_key, "donor_key"), (tissue_key, "tissue_key")] + [
        (k, "donor_obs_keys") for k in donor_obs_keys
    ]:
        if key not in obs.columns:
            raise ValueError(
                f"`{role}` {key!r} is not a column of adata.obs; columns: {preview(list(obs.columns), 20)}."
            )
    if sample_key in obs.columns:
        raise ValueError(
            f"adata.obs already has a column {sample_key!r}; pass another `sample_key` for the sample names."
        )
    if obs.index.has_duplicates:
        raise ValueError(f"adata.obs_names (samples) occur more than once: {preview(duplicates(obs.index))}.")
    for key in (donor_key, tissue_key):
        if obs[key].isna().any():
            raise ValueError(
                f"adata.obs[{key!r}] is missing for samples {preview(obs.index[obs[key].isna()])}."
            )
    donor = obs[donor_key].astype(str).to_numpy()
    tissue = obs[tissue_key].astype(str).to_numpy()
    pairs = pd.DataFrame({"donor": donor, "tissue": tissue}, index=obs.index)
    dup = pairs.duplicated(keep=False).to_numpy()
    if dup.any():
        groups = pairs[dup].groupby(["donor", "tissue"], sort=True).groups
        listed = [f"{d}/{t} ({', '.join(map(str, ids))})" for (d, t), ids in list(groups.items())[:5]]
        raise ValueError(
            f"{len(groups)} donor/tissue pairs occur in more than one sample, e.g. {'; '.join(listed)}."
        )
    donor_obs = _donor_table(obs, donor, donor_obs_keys, _order(obs[donor_key], donor))
    tissues = _order(obs[tissue_key], tissue)
    sample_cols = [c for c in obs.columns if c not in (donor_key, tissue_key, *donor_obs_keys)]
    mods = {}
    for t in tissues:
        rows = np.flatnonzero(tissue == t)
        mod_obs = obs.iloc[rows][sample_cols].copy()
        mod_obs.insert(0, sample_key, obs.index[rows].to_numpy(dtype=object))
        mod_obs.index = pd.Index(donor[rows], dtype=object)
        mods[t] = AnnData(
            X=_take_rows(adata.X, rows),
            obs=mod_obs,
            var=adata.var.copy(),
            layers={k: _take_rows(v, rows) for k, v in adata.layers.items()},
        )
    return build_mudata(mods, donor_obs)


def to_long(
    mdata: MuData,
    donor_key: str = "donor",
    tissue_key: str = "tissue",
    sample_key: str = "sample_id",
) -> AnnData:
    """Return the samples x genes long-format AnnData of a MuData with one modality per tissue.

    Inverse of :func:`from_long`. Samples are ordered tissue by tissue, donors within a tissue in
    modality order. ``mdata`` is not modified.

    Parameters
    ----------
    mdata
        One modality per tissue, donors as ``obs_names``; all tissues must have the same genes,
        the same layers and all-dense or all-sparse matrices.
    donor_key
        Name of the ``.obs`` column that receives the donor.
    tissue_key
        Name of the ``.obs`` column that receives the tissue.
    sample_key
        Column of the modalities' ``.obs`` holding sample names; they become ``obs_names`` (and
        the column is dropped). Where absent, samples are named ``"{donor}_{tissue}"``.

    Returns
    -------
    AnnData with ``.X`` and layers stacked over tissues, the modalities' ``.obs`` columns plus
    ``donor_key`` and ``tissue_key`` (categorical) and the donor columns of ``mdata.obs``, and
    ``.var`` made of the columns that are equal in every tissue (others are dropped, with a notice).
    """
    tissues = list(mdata.mod)
    if not tissues:
        raise ValueError("mdata has no modalities (tissues).")
    first = mdata.mod[tissues[0]]
    layers = set(first.layers)
    for t in tissues:
        adata = mdata.mod[t]
        if not adata.var_names.equals(first.var_names):
            missing = first.var_names.difference(adata.var_names)
            extra = adata.var_names.difference(first.var_names)
            raise ValueError(
                f"Tissue {t!r} has other genes (or another order) than tissue {tissues[0]!r}: "
                f"missing {preview(missing)}, extra {preview(extra)}."
            )
        if set(adata.layers) != layers:
            raise ValueError(
                f"Tissue {t!r} has layers {sorted(adata.layers)}, tissue {tissues[0]!r} has {sorted(layers)}."
            )
        for key in (donor_key, tissue_key):
            if key in adata.obs.columns:
                raise ValueError(f"mdata[{t!r}].obs already has a column {key!r}; pass another name.")
    # Columns "tissue:column" are copies that mudata 0.3's update() pulls from the modalities.
    donor_cols = [c for c in mdata.obs.columns if not any(str(c).startswith(f"{t}:") for t in tissues)]
    clash = [c for c in donor_cols if any(c in mdata.mod[t].obs.columns for t in tissues)]
    clash += [c for c in (donor_key, tissue_key) if c in donor_cols]
    if clash:
        raise ValueError(f"mdata.obs columns {preview(clash)} clash with sample-level columns or keys.")

    frames, names = [], []
    for t in tissues:
        adata = mdata.mod[t]
        frame = adata.obs.copy()
        frame.insert(0, tissue_key, t)
        frame.insert(0, donor_key, adata.obs_names.to_numpy(dtype=object))
        if sample_key in frame.columns:
            names.append(frame.pop(sample_key).astype(str).to_numpy(dtype=object))
        else:
            names.append(np.array([f"{d}_{t}" for d in adata.obs_names], dtype=object))
        frames.append(frame.reset_index(drop=True))
    obs = _concat_obs(frames, [mdata.mod[t].obs for t in tissues])
    obs[donor_key] = pd.Categorical(obs[donor_key], categories=list(mdata.obs_names))
    obs[tissue_key] = pd.Categorical(obs[tissue_key], categories=tissues)
    sample_donors = obs[donor_key].astype(object)
    for col in donor_cols:
        obs[col] = mdata.obs[col].reindex(sample_donors).reset_index(drop=True)
    obs.index = pd.Index(np.concatenate(names), dtype=object)
    if obs.index.has_duplicates:
        raise ValueError(
            f"Sample names occur more than once: {preview(obs.index[obs.index.duplicated()].unique())}."
        )

    mods = [mdata.mod[t] for t in tissues]
    return AnnData(
        X=_stack([m.X for m in mods]),
        obs=obs,
        var=_common_var([m.var for m in mods]),
        layers={k: _stack([m.layers[k] for m in mods]) for k in first.layers},
    )


def _order(column: pd.Series, values: np.ndarray) -> list[str]:
    """Return the distinct ``values``: in category order for a categorical ``column``, else sorted."""
    present = set(values)
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return sorted(present)


def _donor_table(obs: pd.DataFrame, donor: np.ndarray, keys: list[str], donors: list[str]) -> pd.DataFrame:
    """Return the donor-level ``.obs`` (rows ``donors``) of ``keys``, which must be constant within each donor."""
    frame = obs[keys].copy()
    frame.index = pd.Index(donor, dtype=object)
    for key in keys:
        n_values = frame[key].groupby(level=0).nunique(dropna=False)
        if (n_values > 1).any():
            raise ValueError(
                f"adata.obs[{key!r}] differs between the samples of donors {preview(n_values.index[n_values > 1])}."
            )
    return frame[~frame.index.duplicated()].reindex(donors)


def _concat_obs(frames: list[pd.DataFrame], originals: list[pd.DataFrame]) -> pd.DataFrame:
    """Return the row-wise concatenation of ``frames``, keeping categorical columns categorical."""
    obs = pd.concat(frames, axis=0, join="outer", ignore_index=True, sort=False)
    for col in obs.columns:
        dtypes = [o[col].dtype for o in originals if col in o.columns]
        if dtypes and all(isinstance(d, pd.CategoricalDtype) for d in dtypes):
            categories = pd.Index([])
            for d in dtypes:
                categories = categories.append(
                    pd.Index(d.categories)[~pd.Index(d.categories).isin(categories)]
                )
            obs[col] = pd.Categorical(obs[col], categories=categories)
    return obs


def _common_var(vars_: list[pd.DataFrame]) -> pd.DataFrame:
    """Return the ``.var`` columns that are equal in every tissue, noting the dropped ones."""
    var = vars_[0].copy()
    dropped = [c for c in var.columns if not all(c in v.columns and v[c].equals(var[c]) for v in vars_[1:])]
    if dropped:
        logger.info("Dropping var columns that differ between tissues: %s.", ", ".join(map(str, dropped)))
    return var.drop(columns=dropped)


def _take_rows(X, rows: np.ndarray):
    """Return rows ``rows`` of a dense or sparse matrix as a new matrix."""
    if sparse.issparse(X):
        return sparse.csr_matrix(X)[rows]
    return np.asarray(X)[rows]


def _stack(matrices: list):
    """Return matrices stacked by rows: sparse CSR if any is sparse, else dense."""
    if any(sparse.issparse(m) for m in matrices):
        return sparse.vstack([sparse.csr_matrix(m) for m in matrices], format="csr")
    return np.concatenate([np.asarray(m) for m in matrices], axis=0)
