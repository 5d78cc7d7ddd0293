"""The imputation benchmark of :cite:p:`Vinas2023`: HYFA against baselines, per target tissue and source setting."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._baseline_factory import _resolve_baselines
from ._data_access import (
    _adata_matrix,
    _check_donors,
    _check_tissues,
    _format_names,
    _presence,
    _tissue_matrix,
)
from ._metrics import _rowwise_pearson
from ._model_access import _model_data, _model_genes, _model_tissues, _setup_arg, _split_donors
from ._settings import _check_min_donors, _resolve_settings, _select, _Setting
from ._table import TargetScores, _results_frame, _Scored

logger = logging.getLogger(__name__)

__all__ = ["evaluate_imputation"]


# ---------------------------------------------------------------------------------------- inputs
def _resolve_data(model: Any, mdata: MuData | None) -> tuple[MuData, MuData | None]:
    """Return the data to evaluate on, and the data to pass to the model (``None``: its own)."""
    registered = _model_data(model)
    passed = None if mdata is None or mdata is registered else mdata
    mdata = registered if mdata is None else mdata
    if not isinstance(mdata, MuData):
        raise TypeError(
            f"`mdata` must be a MuData object, got {type(mdata).__name__}"
            + (" (the model holds no data: pass `mdata`)." if mdata is None else ".")
        )
    return mdata, passed


def _universe(model: Any, mdata: MuData) -> list[str]:
    """Return the tissues to evaluate: the model's tissues in ``mdata`` if it has any, else every modality."""
    tissues = _model_tissues(model)
    if tissues is None:
        return list(mdata.mod)
    shared = [t for t in tissues if t in mdata.mod]
    if not shared:
        raise ValueError(
            f"None of the model's tissues ({_format_names(tissues)}) is a modality of `mdata` "
            f"({_format_names(list(mdata.mod))})."
        )
    return shared


def _resolve_targets(target_tissues: Sequence[str] | None, universe: Sequence[str]) -> list[str]:
    """Return the candidate target tissues: ``target_tissues`` checked, or the whole ``universe``."""
    if target_tissues is None:
        return list(universe)
    targets = _as_list(target_tissues)
    if len(set(targets)) != len(targets):
        raise ValueError(f"Duplicated target tissues: {targets}.")
    _check_tissues(universe, targets, "target tissue")
    return targets


def _resolve_donors(model: Any, mdata: MuData, donors: Sequence[str] | None) -> list[str]:
    """Return the evaluation donors: ``donors`` checked, or the model's test donors."""
    if donors is None:
        donors = _split_donors(model, "test")
        if donors is None:
            raise ValueError("`donors` is required: the model has no test donors (`model.test_indices`).")
    donors = _as_list(donors)
    _check_donors(mdata, donors, what="evaluation donors")
    return donors


def _warn_leakage(model: Any, name: str, baselines: Mapping[str, Any], donors: Sequence[str]) -> None:
    """Warn when evaluation donors were used to train the model or fit a baseline."""
    fitted = {name: _split_donors(model, "train")}
    for bname, baseline in baselines.items():
        train = getattr(baseline, "train_donors_", None)
        fitted[bname] = None if train is None else list(train)
    index = pd.Index(donors)
    for method, train in fitted.items():
        if train is None:
            continue
        overlap = index.intersection(pd.Index(train))
        if len(overlap):
            warnings.warn(
                f"{method} was trained on evaluation donors: {_format_names(overlap)}.",
                UserWarning,
                stacklevel=3,
            )


# ---------------------------------------------------------------------------------------- scoring
def _predict(
    predictor: Any,
    mdata: MuData | None,
    target: str,
    sources: Sequence[str] | None,
    donors: Sequence[str],
    method: str,
) -> AnnData:
    """Return ``predictor``'s prediction of one target tissue for ``donors`` from ``sources``."""
    kwargs: dict[str, Any] = {
        "target_tissues": target,
        "source_tissues": None if sources is None else list(sources),
        "donors": list(donors),
    }
    if mdata is not None:
        kwargs["mdata"] = mdata
    out = predictor.get_imputed_expression(**kwargs)
    if isinstance(out, MuData) and target in out.mod:
        out = out.mod[target]
    if not isinstance(out, AnnData):
        raise TypeError(
            f"{method}.get_imputed_expression(target_tissues={target!r}) returned {type(out).__name__}; "
            "expected an AnnData."
        )
    return out


class _Scorer:
    """Scores predictions against the measured expression of ``mdata``, matched by donor and gene name.

    The genes are ``genes`` (those the model predicts) or, if ``None``, those of the first prediction.
    """

    def __init__(self, mdata: MuData, layer: str | None, genes: list[str] | None):
        self.mdata = mdata
        self.layer = layer
        self.genes = genes
        self._truth: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def _measured(self, target: str, donors: Sequence[str]) -> np.ndarray:
        """Return the measured donors x genes expression of ``target`` (cached)."""
        key = (target, tuple(donors))
        if key not in self._truth:
            self._truth[key] = _tissue_matrix(self.mdata, target, donors, self.layer, self.genes)
        return self._truth[key]

    def score(self, method: str, target: str, donors: Sequence[str], pred: AnnData) -> TargetScores:
        """Return the per-sample and per-gene Pearson r of ``pred`` for ``target`` and ``donors``."""
        if self.genes is None:
            self.genes = list(pred.var_names)
        truth = self._measured(target, donors)
        label = f"the prediction of {method} for {target!r}"
        predicted = _adata_matrix(pred, donors, self.genes, None, missing_donors="raise", label=label)
        return [
            ("per-sample", np.asarray(donors, dtype=object), _rowwise_pearson(truth, predicted)),
            ("per-gene", np.asarray(self.genes, dtype=object), _rowwise_pearson(truth.T, predicted.T)),
        ]


def _score_method(
    method: str,
    predictor: Any,
    sources: Sequence[str] | None,
    targets: Mapping[str, list[str]],
    scorer: _Scorer,
    mdata: MuData | None,
) -> dict[str, TargetScores]:
    """Return ``{target: scores}`` of ``predictor`` predicting each target for its donors from ``sources``.

    One call per target, for exactly its evaluation donors: cheaper than one multi-target call, whose
    MuData output costs more to assemble than the predictions themselves.
    """
    return {
        target: scorer.score(
            method, target, donors, _predict(predictor, mdata, target, sources, donors, method)
        )
        for target, donors in targets.items()
    }


def _baseline_sources(baseline: Any, tissues: tuple[str, ...]) -> tuple[str, ...] | None:
    """Return the sources of a baseline in a setting with source ``tissues``; ``None`` when it does not apply.

    A baseline's ``source_tissues`` (absent or ``None``: the setting's) must all be sources of the setting.
    """
    own = getattr(baseline, "source_tissues", None)
    if own is None:
        return tissues
    own = tuple(_as_list(own))
    return own if set(own) <= set(tissues) else None


def _score_baseline(
    name: str,
    baseline: Any,
    setting: _Setting,
    targets: Mapping[str, list[str]],
    scorer: _Scorer,
    mdata: MuData,
) -> _Scored | None:
    """Return the scores of a baseline in a fixed-source setting, or ``None`` when it does not apply there."""
    sources = _baseline_sources(baseline, setting.tissues)
    if sources is None:
        logger.info("Setting %r: %s does not apply (sources %s).", setting.name, name, setting.tissues)
        return None
    targets = {t: donors for t, donors in targets.items() if t not in sources}
    if not targets:
        return None
    return _Scored(
        name, "+".join(sources), setting.name, _score_method(name, baseline, sources, targets, scorer, mdata)
    )


def _reused(name: str, setting: _Setting, scored: Mapping[str, list[_Scored]]) -> _Scored | None:
    """Return a baseline's scores in the setting a variable-source ``setting`` is matched to, if any.

    They are reported in ``setting`` as they are (same donors), ``source_setting`` naming the matched one.
    """
    if setting.matched is None:
        return None
    for entry in scored.get(setting.matched, []):
        if entry.method == name:
            return entry
    return None


def _score_setting(
    setting: _Setting,
    selection: Mapping[str, list[str]],
    methods: Mapping[str, Any],
    scorer: _Scorer,
    scored: Mapping[str, list[_Scored]],
    model_mdata: MuData | None,
    mdata: MuData,
) -> list[_Scored]:
    """Return the scores of every method in ``setting``: the model (first of ``methods``), then the baselines.

    In a variable-source setting, the baselines' scores are those of its matched setting in ``scored``.
    """
    (name, model), *baselines = methods.items()
    entries = [
        _Scored(
            name,
            setting.label,
            setting.name,
            _score_method(name, model, setting.tissues, selection, scorer, model_mdata),
        )
    ]
    for bname, baseline in baselines:
        if setting.tissues is None:
            entry = _reused(bname, setting, scored)
        else:
            entry = _score_baseline(bname, baseline, setting, selection, scorer, mdata)
        if entry is not None:
            entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------- protocol
def evaluate_imputation(
    model: Any,
    mdata: MuData | None = None,
    donors: Sequence[str] | None = None,
    sources: str | Mapping[str, Sequence[str] | str | None] | Sequence[str] | None = "paper",
    target_tissues: Sequence[str] | None = None,
    baselines: Mapping[str, Any] | str | None = "default",
    *,
    layer: str | None = None,
    min_donors: int = 25,
    match_setting: str | None = "auto",
    train_donors: Sequence[str] | None = None,
    gene_mask_key: str | None = None,
    covariate_keys: Sequence[str] | None = None,
    name: str | None = None,
) -> pd.DataFrame:
    """Return a tidy table of per-sample and per-gene Pearson r of a model and baselines on held-out donors.

    Implements the evaluation protocol of :cite:p:`Vinas2023`. For every source setting (e.g. whole blood
    alone, the four accessible tissues, or all of each donor's other collected tissues), the targets are
    the tissues (other than the setting's sources) for which at least ``min_donors`` of ``donors`` were
    collected in the target and in every source; see :func:`evaluation_donors`. Each method predicts each
    target for those donors from the setting's source tissues only, and the prediction is compared with
    the measured expression by two metrics, always both: the Pearson correlation across genes for each
    donor (``"per-sample"``) and across donors for each gene (``"per-gene"``).

    Settings with ``None`` as sources let the model use each donor's own other collected tissues (HYFA
    handles a variable number of source tissues). The baselines need a fixed set of sources, so in such
    a setting matched to a fixed setting (``match_setting``) they are the matched setting's predictions,
    on the same donors, and their rows say so in ``source_tissues`` and ``source_setting``: this compares
    "HYFA with all collected tissues" with "TEEBoT from whole blood", as in Fig. 3c of the paper (with
    the default ``sources="paper"``, the ``"all"`` setting uses the whole-blood donors). An unmatched
    variable-source setting scores the model alone.

    Each method is called once per setting and target, for exactly that target's evaluation donors, and
    every score is kept (no averaging), so that distributions can be compared and plotted.

    Parameters
    ----------
    model
        A trained :class:`~hyfa.HYFA` model, or any object with the same
        ``get_imputed_expression(mdata=..., target_tissues=..., source_tissues=..., donors=...)`` method.
        ``source_tissues=None`` must mean "each donor's other collected tissues".
    mdata
        Multi-tissue data holding the evaluation donors' source and target tissues; ``None`` uses the
        data the model was set up with. A different MuData is passed on to the model (a HYFA model
        registers it, adding its ``obsm`` entries).
    donors
        Evaluation (held-out) donors; ``None`` uses the model's test donors (``model.test_indices``,
        the donors neither trained nor validated on).
    sources
        Source settings: a mapping from setting name to source tissues (a list, one tissue, or ``None``
        for all of each donor's other collected tissues); a list of tissues (one setting named by them);
        one tissue name; ``None`` (``{"all": None}``); or ``"paper"`` for :data:`PAPER_SOURCES`
        (GTEx tissue names: ``"whole blood"``, ``"accessible"`` and ``"all"``).
    target_tissues
        Candidate target tissues; ``None`` means every tissue of the model (every modality of ``mdata``
        for other predictors).
    baselines
        Methods compared with the model, keyed by name: fitted :mod:`hyfa.tl` baselines or any objects
        with ``get_imputed_expression``. ``"default"`` fits :func:`default_baselines` (mean, surrogate of
        whole blood, kNN with k = 20 and TEEBoT with 30 components) on ``train_donors``; ``None``
        evaluates the model alone. A baseline whose ``source_tissues`` attribute names tissues (e.g.
        :class:`~hyfa.tl.SurrogateImputation`, its surrogate tissue) is evaluated only in the settings
        whose sources include them, and predicts from those alone.
    layer
        Layer of ``mdata`` holding the measured expression; ``None`` uses the layer the model was set up
        with (``.X`` if none). Also the layer of the default baselines.
    min_donors
        Minimum number of evaluation donors having the sources and the target (25 in the paper).
    match_setting
        Fixed-source setting whose donors and baseline predictions the variable-source settings use;
        ``"auto"`` takes the first fixed-source setting, ``None`` matches nothing.
    train_donors
        Donors the default baselines are fitted on; ``None`` uses the model's training donors
        (``model.train_indices``).
    gene_mask_key
        Gene mask of the default baselines; ``None`` uses the one the model was set up with.
    covariate_keys
        Columns of ``mdata.obs`` (e.g. age and sex) given to the default kNN and TEEBoT baselines.
    name
        Name of the model in the table; ``None`` uses its class name (``"HYFA"``).

    Returns
    -------
    A :class:`~pandas.DataFrame` with one row per score and columns ``method``, ``sources`` (the
    setting's name), ``target``, ``id`` (the donor for ``"per-sample"``, the gene for ``"per-gene"``),
    ``metric``, ``value`` (Pearson r; NaN where undefined, e.g. the per-gene r of mean imputation, which
    predicts the same profile for every donor), ``source_tissues`` (the tissues the prediction used,
    ``"+"``-joined, or ``"all other collected"``) and ``source_setting`` (the setting whose predictions
    the row scores: its own ``sources``, or for a baseline reused in a variable-source setting, the
    matched setting). Genes are those the model predicts. Summarize it with
    :func:`summarize_evaluation` and :func:`win_counts`, and plot it with
    :func:`hyfa.pl.imputation_comparison`.

    Examples
    --------
    >>> mdata = hyfa.data.gtex_acmg59()
    >>> hyfa.pp.normalize_gtex(mdata)
    >>> hyfa.HYFA.setup_mudata(mdata, layer="normalized", gene_mask_key="common")
    >>> model = hyfa.HYFA(mdata)
    >>> model.train(split_key="split")
    >>> results = hyfa.tl.evaluate_imputation(model)  # the paper's three settings, test donors
    >>> summary = hyfa.tl.summarize_evaluation(results)
    >>> hyfa.tl.win_counts(summary)
    """
    if not hasattr(model, "get_imputed_expression"):
        raise TypeError(f"`model` must have a get_imputed_expression method; got {type(model).__name__}.")
    mdata, model_mdata = _resolve_data(model, mdata)
    min_donors = _check_min_donors(min_donors)
    name = type(model).__name__ if name is None else str(name)
    layer = _setup_arg(model, "layer") if layer is None else layer

    universe = _universe(model, mdata)
    settings = _resolve_settings(sources, universe, match_setting)
    targets = _resolve_targets(target_tissues, universe)
    donors = _resolve_donors(model, mdata, donors)
    baselines = _resolve_baselines(
        baselines,
        model,
        mdata,
        donors,
        settings,
        universe,
        train_donors=train_donors,
        layer=layer,
        gene_mask_key=gene_mask_key,
        covariate_keys=covariate_keys,
    )
    if name in baselines:
        raise ValueError(f"Baseline name {name!r} is also the model's name; pass `name=` or rename it.")
    _warn_leakage(model, name, baselines, donors)

    selection = _select(settings, _presence(mdata, donors, universe), donors, targets, min_donors)
    scorer = _Scorer(mdata, layer, _model_genes(model))
    methods = {name: model, **baselines}
    scored: dict[str, list[_Scored]] = {}
    for setting in sorted(
        settings, key=lambda s: s.tissues is None
    ):  # fixed first: their baselines are reused
        if selection[setting.name]:
            scored[setting.name] = _score_setting(
                setting, selection[setting.name], methods, scorer, scored, model_mdata, mdata
            )
    result = _results_frame([s.name for s in settings], selection, scored)
    if result.empty:
        raise ValueError(
            f"No target tissue has at least {min_donors} evaluation donors with every source and the target "
            f"in any source setting ({_format_names([s.name for s in settings])})."
        )
    return result
