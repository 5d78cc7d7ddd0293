"""Tissue and donor embeddings of a trained model as AnnData, ready for Scanpy (neighbors, UMAP)."""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._data_access import _check_tissues, _donor_obs, _format_names, _presence
from ._model_access import _model_data, _model_tissues

__all__ = ["tissue_embeddings", "donor_embeddings", "gtex_organ_systems"]

#: Sample attributes bundled with :func:`hyfa.data.gtex_acmg59` (``SMTS``, ``SMTSD`` per sample).
_GTEX_ATTRIBUTES = "GTEx_v8_SampleAttributes.acmg_59.tsv.gz"


@functools.lru_cache(maxsize=1)
def _gtex_smts() -> dict[str, str]:
    """Return ``{tissue identifier: SMTS}`` for the GTEx v8 tissues, from the bundled sample attributes."""
    from hyfa.data import tissue_id

    path = importlib.resources.files("hyfa.data") / "_files" / _GTEX_ATTRIBUTES
    with importlib.resources.as_file(path) as file:
        table = pd.read_csv(file, sep="\t", usecols=["SMTS", "SMTSD"]).dropna().drop_duplicates("SMTSD")
    return {tissue_id(name): system for name, system in zip(table["SMTSD"], table["SMTS"], strict=True)}


def gtex_organ_systems(tissues: Sequence[str]) -> pd.Series:
    """Return the GTEx organ system (``SMTS``, e.g. ``"Brain"``) of each tissue, NaN where the name is not GTEx's.

    Tissues are GTEx identifiers as made by :func:`hyfa.data.tissue_id` (``"Brain_Cortex"``) or detailed
    names (``"Brain - Cortex"``); the mapping is read from the sample attributes bundled with
    :func:`hyfa.data.gtex_acmg59` (GTEx v8, 54 tissues), so it is available offline.
    """
    from hyfa.data import tissue_id

    smts = _gtex_smts()
    tissues = _as_list(tissues) or []
    return pd.Series(
        [smts.get(t, smts.get(tissue_id(t), np.nan)) for t in tissues],
        index=pd.Index(tissues, name="tissue"),
        name="organ_system",
        dtype=object,
    )


def tissue_embeddings(model: Any, organ_systems: Mapping[str, str] | pd.Series | None = None) -> AnnData:
    """Return the learned tissue embeddings as an AnnData, tissues x dimensions, with each tissue's organ system.

    The tissue embeddings group tissues by organ system in :cite:p:`Vinas2023` (Fig. 2a). The AnnData
    holds them in ``X`` and in ``obsm["X_hyfa"]``, so that ``sc.pp.neighbors(tissues, use_rep="X_hyfa")``,
    ``sc.tl.umap`` and ``sc.pl.umap(tissues, color="organ_system")`` work as they are.

    Parameters
    ----------
    model
        A trained :class:`~hyfa.HYFA`.
    organ_systems
        Organ system (or any grouping) per tissue name. ``None`` uses the GTEx organ system (``SMTS``)
        where the tissue name is a GTEx tissue (:func:`gtex_organ_systems`).

    Returns
    -------
    AnnData with ``obs_names`` = :attr:`~hyfa.HYFA.tissues`, ``X`` = ``obsm["X_hyfa"]`` = the
    ``(n_tissues, n_tissue_latent)`` embeddings, and the categorical ``obs["organ_system"]`` when at least
    one tissue has one (NaN for the others).

    Examples
    --------
    >>> tissues = hyfa.tl.tissue_embeddings(model)
    >>> sc.pp.neighbors(tissues, use_rep="X_hyfa", n_neighbors=5)
    >>> sc.tl.umap(tissues)
    >>> sc.pl.umap(tissues, color="organ_system")
    """
    names = _model_tissues(model)
    if names is None:
        raise TypeError(f"Expected a trained hyfa.HYFA, got {type(model).__name__}.")
    X = np.asarray(model.get_latent_representation(kind="tissue"), dtype=np.float32)
    adata = AnnData(X=X, obs=pd.DataFrame(index=pd.Index(names, name="tissue")))
    adata.obsm["X_hyfa"] = X.copy()
    if organ_systems is None:
        systems = gtex_organ_systems(names)
    else:
        systems = pd.Series(organ_systems, dtype=object)
        unknown = [t for t in systems.index if t not in names]
        if unknown:
            raise ValueError(
                f"`organ_systems` names tissue(s) the model does not know: {_format_names(unknown)}."
            )
        systems = systems.reindex(names)
    if systems.notna().any():
        adata.obs["organ_system"] = pd.Categorical(systems.to_numpy())
    adata.uns["hyfa"] = {"kind": "tissue"}
    return adata


def donor_embeddings(
    model: Any,
    mdata: MuData | None = None,
    donors: Sequence[str] | None = None,
    source_tissues: Sequence[str] | None = None,
    *,
    key_added: str = "X_hyfa",
    batch_size: int | None = None,
) -> AnnData:
    """Return donor embeddings as an AnnData, donors x dimensions, with donor covariates and tissue counts.

    This wraps the scvi-tools idiom ``mdata.obsm["X_hyfa"] = model.get_latent_representation()`` and
    returns an AnnData that Scanpy takes directly (a MuData is not one): the embeddings in ``X`` and
    ``obsm[key_added]``, the donor-level columns of ``mdata.obs`` (e.g. sex, age, split) and the number of
    tissues each donor gave, to colour a UMAP by.

    Parameters
    ----------
    model
        A trained :class:`~hyfa.HYFA`.
    mdata
        Data to embed; ``None`` uses the data the model was set up with.
    donors
        Donors to embed (default all). With ``source_tissues`` and no ``donors``, donors having none
        of the sources are left out.
    source_tissues
        Tissues the embeddings may use (default all of each donor's tissues).
    key_added
        Key of ``obsm`` holding the embeddings.
    batch_size
        Donors per minibatch.

    Returns
    -------
    AnnData with ``obs_names`` = donors, ``X`` = ``obsm[key_added]`` = embeddings, ``obs`` = the donor-level
    columns of ``mdata.obs`` plus ``"n_tissues"`` (tissues of the model the donor gave) and
    ``"n_source_tissues"`` (those the embedding used).

    Examples
    --------
    >>> donors = hyfa.tl.donor_embeddings(model)
    >>> sc.pp.neighbors(donors, use_rep="X_hyfa")
    >>> sc.tl.umap(donors)
    >>> sc.pl.umap(donors, color=["n_tissues", "split"])
    """
    tissues = _model_tissues(model)
    if tissues is None:
        raise TypeError(f"Expected a trained hyfa.HYFA, got {type(model).__name__}.")
    data = _model_data(model) if mdata is None else mdata
    if not isinstance(data, MuData):
        raise TypeError(f"`mdata` must be a MuData, got {type(data).__name__}.")
    sources = _as_list(source_tissues)
    if sources is not None:
        if not sources:
            raise ValueError("`source_tissues` is empty.")
        _check_tissues(tissues, sources, "source tissue")
    in_data = [t for t in tissues if t in data.mod]
    names = list(data.obs_names) if donors is None else _as_list(donors)
    presence = _presence(data, names, in_data)
    n_tissues = np.sum([presence[t] for t in in_data], axis=0) if in_data else np.zeros(len(names), int)
    used = sources if sources is not None else tissues
    n_sources = np.sum([presence[t] for t in used if t in presence], axis=0) if used else n_tissues * 0
    n_sources = np.broadcast_to(np.asarray(n_sources), (len(names),))
    if donors is None and sources is not None:
        keep = n_sources > 0
        names = [d for d, k in zip(names, keep, strict=True) if k]
        n_tissues, n_sources = np.asarray(n_tissues)[keep], n_sources[keep]
        if not names:
            raise ValueError(f"No donor has any of the source tissues {_format_names(sources)}.")
    X = model.get_latent_representation(
        mdata=mdata, kind="donor", donors=names, source_tissues=sources, batch_size=batch_size
    )
    obs = _donor_obs(data, names).copy()
    obs["n_tissues"] = np.asarray(n_tissues, dtype=np.int64)
    obs["n_source_tissues"] = np.asarray(n_sources, dtype=np.int64)
    adata = AnnData(X=np.asarray(X, dtype=np.float32), obs=obs)
    adata.obsm[key_added] = adata.X.copy()
    adata.uns["hyfa"] = {"kind": "donor", "source_tissues": used}
    return adata
