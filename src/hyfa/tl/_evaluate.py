"""The imputation benchmark of :cite:p:`Vinas2023`: HYFA against baselines, per target tissue and source setting."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from scipy import stats

from hyfa._utils import as_list as _as_list

from ._baselines import KNNImputation, MeanImputation, SurrogateImputation, TEEBoT
from ._data_access import _adata_matrix, _check_donors, _format_names, _tissue_matrix
from ._metrics import _rowwise_pearson

logger = logging.getLogger(__name__)

__all__ = [
    "ACCESSIBLE_TISSUES",
    "PAPER_SOURCES",
    "default_baselines",
    "evaluation_donors",
    "evaluate_imputation",
    "summarize_evaluation",
    "win_counts",
]

#: The four accessible GTEx tissues used together as sources in :cite:p:`Vinas2023`.
ACCESSIBLE_TISSUES: tuple[str, ...] = (
    "Whole_Blood",
    "Skin_Sun_Exposed_Lower_leg",
    "Skin_Not_Sun_Exposed_Suprapubic",
    "Adipose_Subcutaneous",
)

#: The source settings of :cite:p:`Vinas2023` (GTEx tissue names): whole blood alone, the four accessible
#: tissues, and all of each donor's other collected tissues (``None``).
PAPER_SOURCES: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {"whole blood": ("Whole_Blood",), "accessible": ACCESSIBLE_TISSUES, "all": None}
)

#: ``source_tissues`` label of the rows of a variable-source setting evaluated with each donor's own tissues.
ALL_OTHER = "all other collected"
#: The two metrics, always reported.
METRICS = ("per-sample", "per-gene")
#: Columns of the tidy table returned by :func:`evaluate_imputation`.
COLUMNS = ["method", "sources", "target", "id", "metric", "value", "source_tissues"]


@dataclass(frozen=True)
class _Setting:
    """One source setting: fixed ``tissues``, or ``None`` for all of each donor's other tissues."""

    name: str
    tissues: tuple[str, ...] | None
    matched: str | None = None  # for variable settings: the fixed setting whose donors (and baselines) to use

    @property
    def label(self) -> str:
        return ALL_OTHER if self.tissues is None else "+".join(self.tissues)


# ---------------------------------------------------------------------------------------- input handling
def _universe(model: Any, mdata: MuData) -> list[str]:
    """Tissues the evaluation may use: the model's tissues present in ``mdata`` if it has any, else every modality."""
    tissues = getattr(model, "tissues", None)
    if tissues is None:
        return list(mdata.mod)
    shared = [t for t in tissues if t in mdata.mod]
    if not shared:
        raise ValueError(
            f"None of the model's tissues ({_format_names(list(tissues))}) is a modality of `mdata` "
            f"({_format_names(list(mdata.mod))})."
        )
    return shared


def _check_known(names: Sequence[str], universe: Sequence[str], what: str) -> None:
    unknown = [t for t in names if t not in universe]
    if unknown:
        raise ValueError(
            f"Unknown {what}(s): {_format_names(unknown)}. Available tissues: {_format_names(list(universe))}."
        )


def _resolve_settings(sources: Any, universe: Sequence[str], match_setting: str | None) -> list[_Setting]:
    """Turn the ``sources`` argument of :func:`evaluate_imputation` into a list of validated settings."""
    if isinstance(sources, str) and sources == "paper":
        spec: Mapping[str, Any] = PAPER_SOURCES
    elif sources is None:
        spec = {"all": None}
    elif isinstance(sources, str):
        spec = {sources: [sources]}
    elif isinstance(sources, Mapping):
        spec = sources
    else:
        names = _as_list(sources)
        spec = {"+".join(names): names}
    if len(spec) == 0:
        raise ValueError("`sources` holds no setting.")
    settings = []
    for name, tissues in spec.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Source setting names must be non-empty strings, got {name!r}.")
        if tissues is None:
            settings.append(_Setting(name, None))
            continue
        tissues = _as_list(tissues)
        if len(tissues) == 0:
            raise ValueError(f"Source setting {name!r} has no tissues; use None for all collected tissues.")
        if len(set(tissues)) != len(tissues):
            raise ValueError(f"Source setting {name!r} lists a tissue twice: {tissues}.")
        _check_known(tissues, universe, f"source tissue of setting {name!r}")
        settings.append(_Setting(name, tuple(tissues)))

    fixed = [s.name for s in settings if s.tissues is not None]
    if match_setting == "auto":
        match_setting = fixed[0] if fixed else None
    elif match_setting is not None and match_setting not in fixed:
        raise ValueError(
            f"`match_setting={match_setting!r}` must name a setting with fixed source tissues; "
            f"those are {_format_names(fixed) if fixed else 'none'}."
        )
    return [s if s.tissues is not None else _Setting(s.name, None, match_setting) for s in settings]


def _registered(model: Any, key: str) -> Any:
    """Return a setup argument the model was registered with (e.g. ``"layer"``), or ``None``."""
    try:
        return model.adata_manager.registry["setup_args"].get(key)
    except (AttributeError, KeyError, TypeError):
        return None


def _model_donors(model: Any, attribute: str) -> list[str] | None:
    """Return the names of the model's donors stored in ``attribute`` (e.g. ``"train_indices_"``)."""
    indices = getattr(model, attribute, None)
    adata = getattr(model, "adata", None)
    if indices is None or adata is None or len(indices) == 0:
        return None
    return list(adata.obs_names[np.asarray(indices)])


# ---------------------------------------------------------------------------------------- donor selection
def _presence(mdata: MuData, donors: Sequence[str], tissues: Sequence[str]) -> dict[str, np.ndarray]:
    index = pd.Index(donors)
    return {t: np.asarray(index.isin(mdata.mod[t].obs_names)) for t in tissues}


def _select(
    settings: Sequence[_Setting],
    present: dict[str, np.ndarray],
    donors: Sequence[str],
    targets: Sequence[str],
    min_donors: int,
) -> dict[str, dict[str, list[str]]]:
    """Return, per setting and kept target, the evaluation donors (in the order of ``donors``)."""
    donors = np.asarray(donors, dtype=object)
    universe = list(present)
    by_name = {s.name: s for s in settings}
    selection: dict[str, dict[str, list[str]]] = {}
    for setting in settings:
        rule = by_name[setting.matched] if setting.tissues is None and setting.matched else setting
        kept: dict[str, list[str]] = {}
        for target in targets:
            if rule.tissues is not None:
                if target in rule.tissues:
                    continue
                mask = present[target].copy()
                for tissue in rule.tissues:
                    mask &= present[tissue]
            else:  # any other collected tissue will do
                others = [t for t in universe if t != target]
                has_other = np.zeros(len(donors), dtype=bool)
                for tissue in others:
                    has_other |= present[tissue]
                mask = present[target] & has_other
            if mask.sum() >= min_donors:
                kept[target] = list(donors[mask])
            else:
                logger.info(
                    "Setting %r: skipping target %r, %d evaluation donors have it and the sources (< %d).",
                    setting.name,
                    target,
                    int(mask.sum()),
                    min_donors,
                )
        if not kept:
            warnings.warn(
                f"Source setting {setting.name!r}: no target tissue has at least {min_donors} evaluation "
                "donors with every source and the target.",
                UserWarning,
                stacklevel=3,
            )
        selection[setting.name] = kept
    return selection


def evaluation_donors(
    mdata: MuData,
    donors: Sequence[str],
    sources: str | Mapping[str, Sequence[str] | str | None] | Sequence[str] | None = "paper",
    target_tissues: Sequence[str] | None = None,
    min_donors: int = 25,
    match_setting: str | None = "auto",
) -> dict[str, dict[str, list[str]]]:
    """Return the evaluation donors of every source setting and target tissue kept by the paper's protocol.

    A target tissue is evaluated in a setting when at least ``min_donors`` of ``donors`` were collected
    in the target and in every source tissue of the setting :cite:p:`Vinas2023`. In a variable-source
    setting (``None``: each donor's other collected tissues) matched to a fixed setting, the donors are
    those of the matched setting; unmatched, they are the donors with the target and at least one other
    tissue. :func:`evaluate_imputation` uses this selection.

    Parameters
    ----------
    mdata
        Multi-tissue data; each modality is a tissue, donors matched by name.
    donors
        Candidate evaluation donors (e.g. the test donors).
    sources
        Source settings, as in :func:`evaluate_imputation`.
    target_tissues
        Candidate targets; ``None`` means every tissue of ``mdata``. A setting's source tissues are never
        its targets.
    min_donors
        Minimum number of evaluation donors for a target to be kept.
    match_setting
        As in :func:`evaluate_imputation`.

    Returns
    -------
    ``{setting: {target: [donor, ...]}}``, settings and targets in input order, donors in the order of
    ``donors``.

    Examples
    --------
    >>> test = mdata.obs_names[mdata.obs["split"] == "test"]
    >>> selection = hyfa.tl.evaluation_donors(mdata, test)
    >>> {setting: len(targets) for setting, targets in selection.items()}
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"`mdata` must be a MuData object, got {type(mdata).__name__}.")
    universe = list(mdata.mod)
    settings = _resolve_settings(sources, universe, match_setting)
    donors = _as_list(donors)
    _check_donors(mdata, donors, what="evaluation donors")
    targets = universe if target_tissues is None else _as_list(target_tissues)
    _check_known(targets, universe, "target tissue")
    return _select(
        settings, _presence(mdata, donors, universe), donors, targets, _check_min_donors(min_donors)
    )


def _check_min_donors(min_donors: int) -> int:
    if int(min_donors) != min_donors or min_donors < 2:
        raise ValueError(f"`min_donors` must be an integer >= 2, got {min_donors!r}.")
    return int(min_donors)


# ---------------------------------------------------------------------------------------- baselines
def default_baselines(
    mdata: MuData,
    train_donors: Sequence[str],
    layer: str | None = None,
    gene_mask_key: str | None = None,
    covariate_keys: Sequence[str] | None = None,
    surrogate_tissue: str | None = "Whole_Blood",
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
        Tissue of the surrogate baseline.
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


# ---------------------------------------------------------------------------------------- prediction
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


class _Table:
    """Accumulates score blocks and builds the tidy DataFrame in one go."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, Any]] = []

    def add(self, method, setting, target, metric, ids, values, source_tissues) -> None:
        self.blocks.append(
            {
                "method": method,
                "sources": setting,
                "target": target,
                "id": np.asarray(ids, dtype=object),
                "metric": metric,
                "value": np.asarray(values, dtype=np.float64),
                "source_tissues": source_tissues,
            }
        )

    def frame(self) -> pd.DataFrame:
        if not self.blocks:
            return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "value" else object) for c in COLUMNS})
        sizes = [len(b["id"]) for b in self.blocks]
        data = {}
        for column in COLUMNS:
            if column in ("id", "value"):
                data[column] = np.concatenate([b[column] for b in self.blocks])
            else:
                data[column] = np.repeat(np.asarray([b[column] for b in self.blocks], dtype=object), sizes)
        return pd.DataFrame(data, columns=COLUMNS)


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
    on the same donors, and their rows say so in ``source_tissues``: this compares "HYFA with all
    collected tissues" with "TEEBoT from whole blood", as in Fig. 3c of the paper (with the default
    ``sources="paper"``, the ``"all"`` setting uses the whole-blood donors). An unmatched
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
        Evaluation (held-out) donors; ``None`` uses the model's test donors (``model.test_indices_``,
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
        evaluates the model alone. A :class:`~hyfa.tl.SurrogateImputation` is evaluated in the settings
        whose sources include its surrogate tissue.
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
        (``model.train_indices_``).
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
    predicts the same profile for every donor) and ``source_tissues`` (the tissues the prediction used,
    ``"+"``-joined, or ``"all other collected"``). Genes are those the model predicts. Summarize it with
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
    registered = getattr(model, "adata", None)
    model_mdata = None if mdata is None or mdata is registered else mdata
    mdata = registered if mdata is None else mdata
    if not isinstance(mdata, MuData):
        raise TypeError(
            f"`mdata` must be a MuData object, got {type(mdata).__name__}"
            + (" (the model holds no data: pass `mdata`)." if mdata is None else ".")
        )
    min_donors = _check_min_donors(min_donors)
    name = type(model).__name__ if name is None else str(name)
    layer = _registered(model, "layer") if layer is None else layer

    universe = _universe(model, mdata)
    settings = _resolve_settings(sources, universe, match_setting)
    if target_tissues is None:
        targets = list(universe)
    else:
        targets = _as_list(target_tissues)
        if len(set(targets)) != len(targets):
            raise ValueError(f"Duplicated target tissues: {targets}.")
        _check_known(targets, universe, "target tissue")

    if donors is None:
        donors = _model_donors(model, "test_indices_")
        if donors is None:
            raise ValueError("`donors` is required: the model has no test donors (`model.test_indices_`).")
    donors = _as_list(donors)
    _check_donors(mdata, donors, what="evaluation donors")

    baselines = _resolve_baselines(
        baselines,
        model,
        mdata,
        donors,
        train_donors,
        layer,
        gene_mask_key,
        covariate_keys,
        universe,
        settings,
    )
    if name in baselines:
        raise ValueError(f"Baseline name {name!r} is also the model's name; pass `name=` or rename it.")
    _warn_leakage(model, name, baselines, donors)

    selection = _select(settings, _presence(mdata, donors, universe), donors, targets, min_donors)
    by_name = {s.name: s for s in settings}
    genes: list[str] | None = list(model.genes) if hasattr(model, "genes") else None
    truth_cache: dict[tuple[str, str], np.ndarray] = {}
    score_cache: dict[tuple[str, str, str], list[tuple[str, np.ndarray, np.ndarray]]] = {}
    table = _Table()

    def score(method: str, setting: _Setting, target: str, pred: AnnData) -> list:
        nonlocal genes
        chosen = selection[setting.name][target]
        if genes is None:
            genes = list(pred.var_names)
        key = (setting.matched or setting.name, target)
        if key not in truth_cache:
            truth_cache[key] = _tissue_matrix(mdata, target, chosen, layer, genes)
        truth = truth_cache[key]
        predicted = _adata_matrix(
            pred,
            chosen,
            genes,
            None,
            missing_donors="raise",
            label=f"the prediction of {method} for {target!r}",
        )
        return [
            ("per-sample", np.asarray(chosen, dtype=object), _rowwise_pearson(truth, predicted)),
            ("per-gene", np.asarray(genes, dtype=object), _rowwise_pearson(truth.T, predicted.T)),
        ]

    def run(method: str, predictor: Any, setting: _Setting, sources, kept: list[str], pass_mdata) -> dict:
        """Predict each of the ``kept`` targets of ``setting`` from ``sources``; return {target: scores}.

        One call per target, for exactly its evaluation donors: cheaper than one multi-target call, whose
        MuData output costs more to assemble than the predictions themselves.
        """
        chosen = selection[setting.name]
        return {
            target: score(
                method,
                setting,
                target,
                _predict(predictor, pass_mdata, target, sources, chosen[target], method),
            )
            for target in kept
        }

    ordered = sorted(settings, key=lambda s: s.tissues is None)  # fixed settings first (baselines reused)
    rows: dict[str, list] = {}
    for setting in ordered:
        kept = list(selection[setting.name])
        if not kept:
            continue
        entries = []
        model_scores = run(name, model, setting, setting.tissues, kept, model_mdata)
        entries.append((name, setting.label, model_scores))
        for bname, baseline in baselines.items():
            if setting.tissues is None:
                if setting.matched is None:
                    continue
                cached = {
                    t: score_cache[(bname, setting.matched, t)]
                    for t in kept
                    if (bname, setting.matched, t) in score_cache
                }
                if not cached:
                    continue
                base_sources = by_name[setting.matched].tissues
                label = _baseline_label(baseline, base_sources)
                entries.append((bname, label, cached))
                continue
            base_sources = _baseline_sources(baseline, setting.tissues)
            if base_sources is None:
                logger.info(
                    "Setting %r: %s does not apply (sources %s).", setting.name, bname, setting.tissues
                )
                continue
            base_kept = [t for t in kept if t not in base_sources]
            if not base_kept:
                continue
            base_scores = run(bname, baseline, setting, base_sources, base_kept, mdata)
            for target, value in base_scores.items():
                score_cache[(bname, setting.name, target)] = value
            entries.append((bname, "+".join(base_sources), base_scores))
        rows[setting.name] = entries

    # Rows in the order of the settings as given, then targets, then methods.
    for setting in settings:
        entries = rows.get(setting.name, [])
        for target in selection[setting.name]:
            for method, label, per_target in entries:
                if target not in per_target:
                    continue
                for metric, ids, values in per_target[target]:
                    table.add(method, setting.name, target, metric, ids, values, label)
    result = table.frame()
    if result.empty:
        raise ValueError(
            f"No target tissue has at least {min_donors} evaluation donors with every source and the target "
            f"in any source setting ({_format_names([s.name for s in settings])})."
        )
    return result


def _baseline_sources(baseline: Any, tissues: tuple[str, ...]) -> tuple[str, ...] | None:
    """Sources to give a baseline in a fixed setting; ``None`` when it does not apply there."""
    if isinstance(baseline, SurrogateImputation):
        return (baseline.surrogate_tissue,) if baseline.surrogate_tissue in tissues else None
    return tissues


def _baseline_label(baseline: Any, tissues: tuple[str, ...] | None) -> str:
    if isinstance(baseline, SurrogateImputation):
        return baseline.surrogate_tissue
    return ALL_OTHER if tissues is None else "+".join(tissues)


def _resolve_baselines(
    baselines, model, mdata, donors, train_donors, layer, gene_mask_key, covariate_keys, universe, settings
) -> dict[str, Any]:
    if baselines is None:
        return {}
    if isinstance(baselines, str):
        if baselines != "default":
            raise ValueError(
                f"`baselines` must be 'default', None or a dict of baselines; got {baselines!r}."
            )
        if train_donors is None:
            train_donors = _model_donors(model, "train_indices_")
            if train_donors is None:
                raise ValueError(
                    "baselines='default' needs `train_donors`: the model has no training donors "
                    "(`model.train_indices_`)."
                )
        train_donors = _as_list(train_donors)
        _check_donors(mdata, train_donors, what="training donors")
        overlap = pd.Index(train_donors).intersection(pd.Index(donors))
        if len(overlap):
            raise ValueError(
                f"Training donors of the baselines are also evaluation donors: {_format_names(overlap)}."
            )
        surrogate = "Whole_Blood" if "Whole_Blood" in universe else None
        if surrogate is None:
            fixed = [s.tissues[0] for s in settings if s.tissues is not None and len(s.tissues) == 1]
            surrogate = fixed[0] if fixed else None
        if gene_mask_key is None:
            gene_mask_key = _registered(model, "gene_mask_key")
        return default_baselines(
            mdata,
            train_donors,
            layer=layer,
            gene_mask_key=gene_mask_key,
            covariate_keys=covariate_keys,
            surrogate_tissue=surrogate,
        )
    if not isinstance(baselines, Mapping):
        raise TypeError(f"`baselines` must be 'default', None or a dict, got {type(baselines).__name__}.")
    for bname, baseline in baselines.items():
        if not hasattr(baseline, "get_imputed_expression"):
            raise TypeError(
                f"Baseline {bname!r} ({type(baseline).__name__}) has no get_imputed_expression method."
            )
    return {str(k): v for k, v in baselines.items()}


def _warn_leakage(model: Any, name: str, baselines: Mapping[str, Any], donors: Sequence[str]) -> None:
    """Warn when evaluation donors were used to train the model or fit a baseline."""
    fitted = {name: _model_donors(model, "train_indices_")}
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


# ---------------------------------------------------------------------------------------- summaries
def _check_results(results: pd.DataFrame) -> None:
    if not isinstance(results, pd.DataFrame):
        raise TypeError(f"Expected the DataFrame of evaluate_imputation, got {type(results).__name__}.")
    missing = [c for c in ("method", "sources", "target", "metric", "value") if c not in results.columns]
    if missing:
        raise ValueError(
            f"Not a table of evaluate_imputation: missing column(s) {_format_names(missing)}; "
            f"has {_format_names(list(results.columns))}."
        )
    if results.empty:
        raise ValueError("The results table is empty.")


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


def summarize_evaluation(results: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Return per-target mean and median scores, with two-sided Mann-Whitney-Wilcoxon tests against a reference.

    For every source setting, metric and target tissue, each method's scores (per-donor or per-gene
    Pearson r) are summarized and compared with those of the ``reference`` method by a two-sided
    Mann-Whitney-Wilcoxon test (:func:`scipy.stats.mannwhitneyu`), as in :cite:p:`Vinas2023`. NaN scores
    (undefined correlations) are left out.

    Parameters
    ----------
    results
        Tidy table of :func:`evaluate_imputation`.
    reference
        Method the others are compared with; ``None`` uses the first method of ``results`` (the model).

    Returns
    -------
    One row per (``sources``, ``metric``, ``target``, ``method``), in the order of ``results``, with
    columns ``n_donors`` (donors scored), ``n`` (finite scores), ``mean``, ``median``, ``reference``,
    ``reference_mean``, ``difference`` (``reference_mean - mean``), ``pvalue`` (NaN for the reference
    itself and where either side has no finite score) and ``reference_better`` (``reference_mean >
    mean``; False where either is NaN).

    Examples
    --------
    >>> summary = hyfa.tl.summarize_evaluation(results)
    >>> summary.pivot_table(index="target", columns=["sources", "method", "metric"], values="mean")
    """
    _check_results(results)
    methods = list(pd.unique(results["method"]))
    reference = methods[0] if reference is None else reference
    if reference not in methods:
        raise ValueError(f"Unknown reference method {reference!r}; methods: {_format_names(methods)}.")
    keys = ["sources", "metric", "target"]
    n_donors = (
        results[results["metric"] == "per-sample"].groupby(["sources", "target", "method"], sort=False).size()
    )
    records = []
    for (setting, metric, target), group in results.groupby(keys, sort=False):
        values = {m: g["value"].to_numpy() for m, g in group.groupby("method", sort=False)}
        ref = _finite(values[reference]) if reference in values else None
        ref_mean = float(ref.mean()) if ref is not None and len(ref) else np.nan
        for method, vals in values.items():
            finite = _finite(vals)
            mean = float(finite.mean()) if len(finite) else np.nan
            pvalue = np.nan
            if method != reference and ref is not None and len(ref) and len(finite):
                pvalue = float(stats.mannwhitneyu(ref, finite, alternative="two-sided").pvalue)
            records.append(
                {
                    "sources": setting,
                    "metric": metric,
                    "target": target,
                    "method": method,
                    "n_donors": int(n_donors.get((setting, target, method), 0)),
                    "n": len(finite),
                    "mean": mean,
                    "median": float(np.median(finite)) if len(finite) else np.nan,
                    "reference": reference,
                    "reference_mean": ref_mean,
                    "difference": ref_mean - mean,
                    "pvalue": pvalue,
                    "reference_better": bool(ref_mean > mean),
                }
            )
    return pd.DataFrame.from_records(records)


def win_counts(summary: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Return, per setting, metric and method, in how many target tissues the reference method scores higher.

    Parameters
    ----------
    summary
        Output of :func:`summarize_evaluation` (a table of :func:`evaluate_imputation` is summarized first,
        with its first method as the reference).
    alpha
        Significance level of the per-target Mann-Whitney-Wilcoxon p-values.

    Returns
    -------
    One row per (``sources``, ``metric``, ``method``) other than the reference, with ``reference``,
    ``n_targets`` (targets where both mean scores are defined), ``wins`` (targets where the reference's
    mean is higher), ``significant_wins`` / ``significant_losses`` (higher / lower mean with ``pvalue <
    alpha``), and ``reference_mean`` / ``method_mean``, the means over those targets of the per-target
    means. Methods with no defined score in a setting (e.g. the per-gene r of mean imputation) have
    ``n_targets == 0``.

    Examples
    --------
    >>> wins = hyfa.tl.win_counts(hyfa.tl.summarize_evaluation(results))
    >>> for row in wins.itertuples():
    ...     print(
    ...         f"{row.sources}, {row.metric}: {row.reference} > {row.method} in {row.wins}/{row.n_targets}"
    ...     )
    """
    if "value" in summary.columns:
        summary = summarize_evaluation(summary)
    needed = ["sources", "metric", "target", "method", "reference", "mean", "reference_mean", "pvalue"]
    missing = [c for c in needed if c not in summary.columns]
    if missing:
        raise ValueError(
            f"Not a summary of summarize_evaluation: missing column(s) {_format_names(missing)}."
        )
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    others = summary[summary["method"] != summary["reference"]]
    records = []
    for (setting, metric, method), group in others.groupby(["sources", "metric", "method"], sort=False):
        both = group[np.isfinite(group["mean"]) & np.isfinite(group["reference_mean"])]
        better = both["reference_mean"] > both["mean"]
        significant = both["pvalue"] < alpha
        records.append(
            {
                "sources": setting,
                "metric": metric,
                "method": method,
                "reference": group["reference"].iloc[0],
                "n_targets": len(both),
                "wins": int(better.sum()),
                "significant_wins": int((better & significant).sum()),
                "significant_losses": int(((both["reference_mean"] < both["mean"]) & significant).sum()),
                "reference_mean": float(both["reference_mean"].mean()) if len(both) else np.nan,
                "method_mean": float(both["mean"].mean()) if len(both) else np.nan,
            }
        )
    return pd.DataFrame.from_records(
        records,
        columns=[
            "sources",
            "metric",
            "method",
            "reference",
            "n_targets",
            "wins",
            "significant_wins",
            "significant_losses",
            "reference_mean",
            "method_mean",
        ],
    )
