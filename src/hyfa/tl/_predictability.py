"""Cross-tissue predictability: how well each tissue alone predicts each other tissue."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._data_access import (
    _adata_matrix,
    _check_donors,
    _check_tissues,
    _presence,
    _tissue_matrix,
)
from ._metrics import _rowwise_pearson
from ._model_access import _model_data, _model_genes, _model_tissues, _setup_arg

logger = logging.getLogger(__name__)

__all__ = ["predictability", "Predictability"]

_METRICS = ("per-gene", "per-sample")
_STATS = ("mean", "median")


@dataclass
class Predictability:
    """Result of :func:`predictability`: scores of imputing each target tissue from each source tissue alone.

    Attributes
    ----------
    table
        One row per evaluated ordered pair: ``source``, ``target``, ``n_donors`` (donors having both),
        and the ``mean`` and ``median`` per-gene and per-sample Pearson r (columns
        ``"per-gene mean"``, ``"per-gene median"``, ``"per-sample mean"``, ``"per-sample median"``).
    scores
        Tidy scores: ``source``, ``target``, ``metric`` (``"per-gene"`` or ``"per-sample"``), ``name``
        (gene or donor) and ``value`` (Pearson r; NaN where undefined).
    skipped
        Pairs left out for having fewer than ``min_donors`` donors with both tissues: ``source``,
        ``target``, ``n_donors``.
    tissues
        Tissues in matrix order.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    skipped: pd.DataFrame
    tissues: list[str] = field(default_factory=list)

    def matrix(self, metric: str = "per-gene", stat: str = "mean") -> pd.DataFrame:
        """Return the sources x targets matrix of one summary of the scores (NaN on the diagonal and skipped pairs)."""
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")
        if stat not in _STATS:
            raise ValueError(f"stat must be one of {_STATS}, got {stat!r}.")
        wide = self.table.pivot(index="source", columns="target", values=f"{metric} {stat}")
        out = wide.reindex(index=self.tissues, columns=self.tissues).astype(np.float64)
        out.index.name, out.columns.name = "source", "target"
        return out

    def __repr__(self) -> str:
        return (
            f"Predictability of {len(self.tissues)} tissues: {len(self.table)} pairs evaluated, "
            f"{len(self.skipped)} skipped (fewer donors than min_donors)."
        )


def _summary(source: str, target: str, n: int, gene_r: np.ndarray, sample_r: np.ndarray) -> dict:
    row: dict[str, Any] = {"source": source, "target": target, "n_donors": n}
    for metric, r in (("per-gene", gene_r), ("per-sample", sample_r)):
        finite = r[np.isfinite(r)]
        row[f"{metric} mean"] = float(finite.mean()) if len(finite) else np.nan
        row[f"{metric} median"] = float(np.median(finite)) if len(finite) else np.nan
    return row


def predictability(
    model: Any,
    mdata: MuData | None = None,
    donors: Sequence[str] | None = None,
    *,
    sources: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    min_donors: int = 10,
    layer: str | None = None,
    batch_size: int | None = None,
) -> Predictability:
    """Return how well each tissue alone predicts every other tissue: Pearson r of single-source imputation.

    For every ordered pair (source, target) with at least ``min_donors`` of ``donors`` having both
    tissues, the target is imputed from the source tissue alone and scored against the measured target:
    the per-gene Pearson r (across donors) and the per-sample Pearson r (across genes), as in the
    predictability network of :cite:p:`Vinas2023` (Fig. 2). Pairs with too few donors are skipped and
    counted, not an error. Each source takes one call of ``get_imputed_expression`` for all its targets,
    which share the source's encoding.

    Parameters
    ----------
    model
        A trained :class:`~hyfa.HYFA`.
    mdata
        Data holding the donors' measured expression; ``None`` uses the data the model was set up with.
    donors
        Donors to score, ideally held out from training (e.g. ``mdata.obs_names[mdata.obs["split"] ==
        "test"]``); ``None`` uses every donor of ``mdata``.
    sources
        Source tissues (default all of the model's tissues).
    targets
        Target tissues (default all of the model's tissues).
    min_donors
        Minimum number of donors having both tissues for a pair to be scored (at least 3).
    layer
        Layer of ``mdata`` holding the measured expression; ``None`` uses the layer the model was set up
        with (``.X`` if none).
    batch_size
        Donors per minibatch of the imputation.

    Returns
    -------
    A :class:`Predictability`: ``.table`` (one row per pair), ``.scores`` (tidy per-gene and per-sample r),
    ``.skipped`` (pairs with too few donors) and ``.matrix(metric, stat)`` (sources x targets).

    Examples
    --------
    >>> test = mdata.obs_names[mdata.obs["split"] == "test"]
    >>> pred = hyfa.tl.predictability(model, donors=test, min_donors=20)
    >>> pred.matrix("per-gene", "mean")
    >>> hyfa.pl.predictability_heatmap(pred)
    """
    tissues = _model_tissues(model)
    genes = _model_genes(model)
    if tissues is None or genes is None:
        raise TypeError(f"Expected a trained hyfa.HYFA, got {type(model).__name__}.")
    data = _model_data(model) if mdata is None else mdata
    if not isinstance(data, MuData):
        raise TypeError(f"`mdata` must be a MuData, got {type(data).__name__}.")
    if isinstance(min_donors, bool) or not isinstance(min_donors, int | np.integer) or min_donors < 3:
        raise ValueError(f"min_donors must be an integer >= 3, got {min_donors!r}.")
    source_list = tissues if sources is None else _as_list(sources)
    target_list = tissues if targets is None else _as_list(targets)
    for what, names in (("source tissue", source_list), ("target tissue", target_list)):
        if not names:
            raise ValueError(f"No {what}s given.")
        _check_tissues(tissues, names, what)
        _check_tissues(data, names, what)
    names = list(data.obs_names) if donors is None else _as_list(donors)
    _check_donors(data, names)
    layer = _setup_arg(model, "layer") if layer is None else layer
    presence = _presence(data, names, sorted(set(source_list) | set(target_list)))
    donor_index = pd.Index(names)

    rows, scores, skipped = [], [], []
    for source in source_list:
        has_source = presence[source]
        counts = {t: int((has_source & presence[t]).sum()) for t in target_list if t != source}
        kept = [t for t, n in counts.items() if n >= min_donors]
        skipped += [
            {"source": source, "target": t, "n_donors": n} for t, n in counts.items() if n < min_donors
        ]
        if not kept:
            continue
        use = has_source & np.any([presence[t] for t in kept], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # every donor has the source: nothing is skipped
            imputed = model.get_imputed_expression(
                mdata=mdata,
                target_tissues=kept,
                source_tissues=[source],
                donors=list(donor_index[use]),
                exclude_target=True,
                batch_size=batch_size,
            )
        for target in kept:
            both = list(donor_index[has_source & presence[target]])
            truth = _tissue_matrix(data, target, both, layer, genes)
            pred = _adata_matrix(
                imputed.mod[target], both, genes, None, missing_donors="raise", label=f"imputed {target!r}"
            )
            gene_r = _rowwise_pearson(truth.T, pred.T)
            sample_r = _rowwise_pearson(truth, pred)
            rows.append(_summary(source, target, len(both), gene_r, sample_r))
            for metric, r, index in (("per-gene", gene_r, genes), ("per-sample", sample_r, both)):
                scores.append(
                    pd.DataFrame(
                        {"source": source, "target": target, "metric": metric, "name": index, "value": r}
                    )
                )
    skipped_table = pd.DataFrame(skipped, columns=["source", "target", "n_donors"])
    if not rows:
        raise ValueError(
            f"No (source, target) pair has min_donors={min_donors} donors with both tissues among the "
            f"{len(names)} donors given (most: {int(skipped_table['n_donors'].max()) if len(skipped) else 0})."
        )
    if len(skipped_table):
        logger.info(
            "Skipped %d of %d tissue pairs with fewer than %d donors having both tissues.",
            len(skipped_table),
            len(skipped_table) + len(rows),
            min_donors,
        )
    order = list(dict.fromkeys([*source_list, *target_list]))
    return Predictability(
        table=pd.DataFrame(rows),
        scores=pd.concat(scores, ignore_index=True),
        skipped=skipped_table,
        tissues=[t for t in tissues if t in order],
    )
