"""The baselines of :cite:p:`Vinas2023` in one call, and the ``baselines`` argument of the evaluation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._data_access import _check_donors, _format_names
from ._model_access import _setup_arg, _split_donors
from ._settings import SURROGATE_TISSUE, _Setting

__all__ = ["default_baselines"]


def default_baselines(
    mdata: MuData,
    train_donors: Sequence[str],
    layer: str | None = None,
    gene_mask_key: str | None = None,
    covariate_keys: Sequence[str] | None = None,
    surrogate_tissue: str | None = SURROGATE_TISSUE,
    n_neighbors: int = 20,
    n_components: int = 30,
    seed: int = 0,
) -> dict[str, Any]:
    """Return the baselines of :cite:p:`Vinas2023`, fitted on ``train_donors``, keyed by display name.

    ``"mean"`` (:class:`~hyfa.tl.MeanImputation`), ``"surrogate"`` (:class:`~hyfa.tl.SurrogateImputation`,
    left out when ``surrogate_tissue`` is ``None`` or not in ``mdata``), ``"kNN"``
    (:class:`~hyfa.tl.KNNImputation`, ``n_neighbors`` = 20) and ``"TEEBoT"`` (:class:`~hyfa.tl.TEEBoT`,
    PCA with ``n_components`` = 30 then linear regression); kNN and TEEBoT also use ``covariate_keys``.

    Parameters
    ----------
    mdata
        Multi-tissue data holding the training donors.
    train_donors
        Donors the baselines are fitted on.
    layer
        Layer holding the expression; ``None`` uses ``.X``.
    gene_mask_key
        Boolean ``var`` column selecting the genes (e.g. ``"common"``); ``None`` uses all shared genes.
    covariate_keys
        Columns of ``mdata.obs`` (e.g. age and sex) used by kNN and TEEBoT.
    surrogate_tissue
        Tissue of the surrogate baseline (GTEx whole blood by default).
    n_neighbors
        Neighbours of the kNN baseline.
    n_components
        Principal components of TEEBoT.
    seed
        Random state of TEEBoT's PCA.

    Examples
    --------
    >>> baselines = hyfa.tl.default_baselines(mdata, train, layer="normalized", gene_mask_key="common")
    >>> results = hyfa.tl.evaluate_imputation(model, donors=test, baselines=baselines)
    """
    common = {"layer": layer, "gene_mask_key": gene_mask_key}
    out: dict[str, Any] = {"mean": MeanImputation(mdata, **common).fit(train_donors)}
    if surrogate_tissue is not None and surrogate_tissue in mdata.mod:
        out["surrogate"] = SurrogateImputation(mdata, surrogate_tissue=surrogate_tissue, **common).fit(
            train_donors
        )
    out["kNN"] = KNNImputation(mdata, n_neighbors=n_neighbors, covariate_keys=covariate_keys, **common).fit(
        train_donors
    )
    out["TEEBoT"] = TEEBoT(
        mdata, n_components=n_components, covariate_keys=covariate_keys, seed=seed, **common
    ).fit(train_donors)
    return out


def _default_surrogate(universe: Sequence[str], settings: Sequence[_Setting]) -> str | None:
    """Return the default surrogate tissue: the paper's if evaluated, else the first lone source tissue."""
    if SURROGATE_TISSUE in universe:
        return SURROGATE_TISSUE
    lone = [s.tissues[0] for s in settings if s.tissues is not None and len(s.tissues) == 1]
    return lone[0] if lone else None


def _training_donors(
    model: Any, mdata: MuData, train_donors: Sequence[str] | None, donors: Sequence[str]
) -> list[str]:
    """Return the default baselines' training donors: ``train_donors`` or the model's, none evaluated."""
    if train_donors is None:
        train_donors = _split_donors(model, "train")
        if train_donors is None:
            raise ValueError(
                "baselines='default' needs `train_donors`: the model has no training donors "
                "(`model.train_indices`)."
            )
    train_donors = _as_list(train_donors)
    _check_donors(mdata, train_donors, what="training donors")
    overlap = pd.Index(train_donors).intersection(pd.Index(donors))
    if len(overlap):
        raise ValueError(
            f"Training donors of the baselines are also evaluation donors: {_format_names(overlap)}."
        )
    return train_donors


def _check_baselines(baselines: Any) -> dict[str, Any]:
    """Return a dict of baselines keyed by name, each with a ``get_imputed_expression`` method."""
    if not isinstance(baselines, Mapping):
        raise TypeError(f"`baselines` must be 'default', None or a dict, got {type(baselines).__name__}.")
    for name, baseline in baselines.items():
        if not hasattr(baseline, "get_imputed_expression"):
            raise TypeError(
                f"Baseline {name!r} ({type(baseline).__name__}) has no get_imputed_expression method."
            )
    return {str(k): v for k, v in baselines.items()}


def _resolve_baselines(
    baselines: Mapping[str, Any] | str | None,
    model: Any,
    mdata: MuData,
    donors: Sequence[str],
    settings: Sequence[_Setting],
    universe: Sequence[str],
    *,
    train_donors: Sequence[str] | None,
    layer: str | None,
    gene_mask_key: str | None,
    covariate_keys: Sequence[str] | None,
) -> dict[str, Any]:
    """Return the baselines of :func:`~hyfa.tl.evaluate_imputation`'s ``baselines`` argument, keyed by name.

    ``"default"`` fits :func:`default_baselines` on ``train_donors`` (the model's training donors if
    ``None``) with the model's gene mask unless ``gene_mask_key`` is given; ``None`` gives none.
    """
    if baselines is None:
        return {}
    if not isinstance(baselines, str):
        return _check_baselines(baselines)
    if baselines != "default":
        raise ValueError(f"`baselines` must be 'default', None or a dict of baselines; got {baselines!r}.")
    return default_baselines(
        mdata,
        _training_donors(model, mdata, train_donors, donors),
        layer=layer,
        gene_mask_key=_setup_arg(model, "gene_mask_key") if gene_mask_key is None else gene_mask_key,
        covariate_keys=covariate_keys,
        surrogate_tissue=_default_surrogate(universe, settings),
    )
