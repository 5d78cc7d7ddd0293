"""Per-tissue comparison of imputation methods (box plots of Pearson r per target tissue)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from matplotlib.axes import Axes

from hyfa._checks import check_results as _check_results
from hyfa._checks import preview as _format_names
from hyfa._utils import as_list as _as_list

__all__ = ["imputation_comparison"]

_METRIC_LABELS = {"per-sample": "per-sample Pearson r", "per-gene": "per-gene Pearson r"}


def _stars(pvalue: float) -> str:
    """Significance stars of :cite:p:`Vinas2023` (Fig. 3): ``*`` <= 0.05, ``**`` <= 0.01, ... ``****`` <= 1e-4."""
    if not np.isfinite(pvalue):
        return ""
    for threshold, label in ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (5e-2, "*")):
        if pvalue <= threshold:
            return label
    return "ns"


def _groups(data: pd.DataFrame, settings: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """Return (label, rows) per method and setting, each method's predictions of a setting drawn once.

    A baseline reused in a variable-source setting (``source_setting`` naming its matched setting) is
    drawn in the first of ``settings`` showing that setting's predictions, like every other method.
    Tables without ``source_setting`` draw every setting's rows.
    """
    origins = data["source_setting"] if "source_setting" in data.columns else data["sources"]
    kept: list[tuple[str, str, pd.DataFrame]] = []
    seen: set[tuple[str, str]] = set()
    for setting in settings:
        in_setting = (data["sources"] == setting).to_numpy()
        for method in pd.unique(data.loc[in_setting, "method"]):
            rows = in_setting & (data["method"] == method).to_numpy()
            key = (method, origins[rows].iloc[0])
            if key not in seen:
                seen.add(key)
                kept.append((method, setting, data[rows]))
    counts = pd.Series([m for m, _, _ in kept]).value_counts()
    return [(m if counts[m] == 1 or len(settings) == 1 else f"{m} ({s})", g) for m, s, g in kept]


def imputation_comparison(
    results: pd.DataFrame,
    metric: str = "per-gene",
    sources: str | Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    *,
    annotate: str | None = None,
    reference: str | None = None,
    sort: bool = False,
    strip: bool = False,
    palette: Sequence | Mapping[str, object] | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Return box plots of each method's Pearson r per target tissue, one group of boxes per target.

    Draws the per-tissue comparison of :cite:p:`Vinas2023` (Fig. 3) from the table of
    :func:`hyfa.tl.evaluate_imputation`: for each target tissue, one box per method (and source setting)
    summarizing the per-gene or per-sample Pearson correlations. A baseline reused in a variable-source
    setting (its ``source_setting`` is the matched setting) is drawn once; a method without any defined score
    (e.g. the per-gene r of mean imputation, which predicts one profile for every donor) is left out.

    Parameters
    ----------
    results
        Tidy table of :func:`hyfa.tl.evaluate_imputation`.
    metric
        ``"per-gene"`` (r across donors, one value per gene) or ``"per-sample"`` (r across genes, one
        value per donor).
    sources
        Source setting(s) to draw; ``None`` is allowed when ``results`` holds one setting. With several
        settings, a method drawn in more than one gets the setting in its label, e.g. ``"HYFA (all)"``.
    methods
        Methods to draw, in this order; ``None`` draws all, in the order of ``results``.
    targets
        Target tissues, in this order; ``None`` draws every target of the chosen settings.
    annotate
        Label of a box (e.g. ``"TEEBoT"``) to compare with the ``reference`` box of each target by a
        two-sided Mann-Whitney-Wilcoxon test; the significance stars (``*`` P <= 0.05, ``**`` <= 0.01,
        ``***`` <= 0.001, ``****`` <= 1e-4, ``ns`` otherwise) are written above each target.
    reference
        Label of the box that ``annotate`` and ``sort`` refer to (e.g. ``"HYFA (all)"``); ``None`` takes
        the first box.
    sort
        Order targets by the median of the ``reference`` box, highest first.
    strip
        Also draw the individual scores as jittered points.
    palette
        Colours of the boxes: a sequence (in box order) or a mapping from box label to colour; ``None``
        uses matplotlib's colour cycle.
    figsize
        Figure size when ``ax`` is ``None``; by default it grows with the number of targets.
    ax
        Axes to draw into; ``None`` creates a figure.
    show
        Call :func:`matplotlib.pyplot.show`. ``None``: only when matplotlib is interactive and ``ax`` is
        ``None``.
    save
        File path to save the figure to (any format matplotlib writes, e.g. ``.png``, ``.pdf``).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes`, with one x tick per target tissue, or ``None`` when the figure was
    shown.

    Examples
    --------
    >>> results = hyfa.tl.evaluate_imputation(model, sources={"whole blood": ["Whole_Blood"], "all": None})
    >>> ax = hyfa.pl.imputation_comparison(
    ...     results, metric="per-gene", sources=["whole blood", "all"], show=False
    ... )
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    _check_results(results)
    if metric not in _METRIC_LABELS:
        raise ValueError(f"Unknown metric {metric!r}; choose 'per-gene' or 'per-sample'.")
    available = list(pd.unique(results["sources"]))
    if sources is None:
        if len(available) > 1:
            raise ValueError(
                f"`results` holds several source settings ({_format_names(available)}): pick one or a list "
                "with `sources=`."
            )
        settings = available
    else:
        settings = _as_list(sources)
        unknown = [s for s in settings if s not in available]
        if unknown:
            raise ValueError(
                f"Unknown source setting(s) {_format_names(unknown)}; `results` holds {_format_names(available)}."
            )
    data = results[(results["metric"] == metric) & results["sources"].isin(settings)]
    if methods is not None:
        methods = _as_list(methods)
        known = set(data["method"])
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(
                f"Unknown method(s) {_format_names(unknown)}; `results` holds {_format_names(known)}."
            )
        data = data[data["method"].isin(methods)]
    if targets is None:
        target_list = list(pd.unique(data["target"]))
    else:
        target_list = _as_list(targets)
        unknown = [t for t in target_list if t not in set(data["target"])]
        if unknown:
            raise ValueError(
                f"Target tissue(s) {_format_names(unknown)} not evaluated in setting(s) {_format_names(settings)}."
            )
    if not target_list:
        raise ValueError(f"No {metric} scores in setting(s) {_format_names(settings)}.")

    groups = _groups(data, settings)
    if methods is not None:
        rank = {m: i for i, m in enumerate(methods)}
        groups.sort(key=lambda g: rank[g[1]["method"].iloc[0]])
    labels = [label for label, _ in groups]
    values = {
        label: {t: v["value"].to_numpy(dtype=np.float64) for t, v in g.groupby("target", sort=False)}
        for label, g in groups
    }

    def finite(label: str, target: str) -> np.ndarray:
        v = values[label].get(target, np.empty(0))
        return v[np.isfinite(v)]

    # Methods without any defined score here (e.g. the per-gene r of mean imputation) get no slot.
    labels = [label for label in labels if any(len(finite(label, t)) for t in target_list)]
    if not labels:
        raise ValueError(f"No defined {metric} scores to draw in setting(s) {_format_names(settings)}.")
    if reference is None:
        reference = labels[0]
    elif reference not in labels:
        raise ValueError(f"`reference={reference!r}` is not a box label; labels: {_format_names(labels)}.")
    if sort:
        first = reference
        medians = [np.median(finite(first, t)) if len(finite(first, t)) else -np.inf for t in target_list]
        target_list = [target_list[i] for i in np.argsort(medians, kind="stable")[::-1]]
    if annotate is not None and annotate not in labels:
        raise ValueError(f"`annotate={annotate!r}` is not a box label; labels: {_format_names(labels)}.")

    if isinstance(palette, Mapping):
        missing = [label for label in labels if label not in palette]
        if missing:
            raise ValueError(f"`palette` has no colour for {_format_names(missing)}.")
        colors = [palette[label] for label in labels]
    else:
        cycle = list(palette) if palette is not None else mpl.rcParams["axes.prop_cycle"].by_key()["color"]
        colors = [cycle[i % len(cycle)] for i in range(len(labels))]

    created = ax is None
    if ax is None:
        width_in = max(4.0, 0.25 * len(target_list) * max(1, len(labels)) + 1.5)
        _, ax = plt.subplots(figsize=figsize or (min(width_in, 30.0), 4.0))
    n = len(labels)
    width = 0.8 / n
    x = np.arange(len(target_list), dtype=np.float64)
    rng = np.random.default_rng(0)
    for j, (label, color) in enumerate(zip(labels, colors, strict=True)):
        offset = (j - (n - 1) / 2) * width
        boxes, positions = [], []
        for i, target in enumerate(target_list):
            v = finite(label, target)
            if len(v):
                boxes.append(v)
                positions.append(x[i] + offset)
        if not boxes:
            continue
        ax.boxplot(
            boxes,
            positions=positions,
            widths=width * 0.85,
            patch_artist=True,
            manage_ticks=False,
            boxprops={"facecolor": color, "edgecolor": "0.2", "linewidth": 0.8},
            medianprops={"color": "0.1", "linewidth": 1.0},
            whiskerprops={"color": "0.3", "linewidth": 0.8},
            capprops={"color": "0.3", "linewidth": 0.8},
            flierprops={"marker": ".", "markersize": 2, "markerfacecolor": "0.3", "markeredgecolor": "none"},
        )
        if strip:
            for pos, v in zip(positions, boxes, strict=True):
                jitter = rng.uniform(-width * 0.3, width * 0.3, size=len(v))
                ax.scatter(
                    pos + jitter, v, s=3, color=color, edgecolors="0.2", linewidths=0.2, alpha=0.6, zorder=3
                )

    if annotate is not None:
        transform = blended_transform_factory(ax.transData, ax.transAxes)
        for i, target in enumerate(target_list):
            ref, other = finite(reference, target), finite(annotate, target)
            if len(ref) and len(other):
                p = stats.mannwhitneyu(ref, other, alternative="two-sided").pvalue
                ax.text(x[i], 1.01, _stars(p), transform=transform, ha="center", va="bottom", fontsize=7)

    ax.set_xticks(x)
    ax.set_xticklabels(target_list, rotation=90)
    ax.set_xlim(-0.6, len(target_list) - 0.4)
    ax.set_xlabel("target tissue")
    ax.set_ylabel(_METRIC_LABELS[metric])
    ax.axhline(0.0, color="0.6", linewidth=0.6, zorder=0)
    ax.legend(
        handles=[
            Patch(facecolor=c, edgecolor="0.2", label=label) for label, c in zip(labels, colors, strict=True)
        ],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        frameon=False,
        fontsize="small",
    )
    if len(settings) == 1:
        ax.set_title(f"sources: {settings[0]}")

    if save is not None:
        ax.figure.savefig(save, bbox_inches="tight", dpi=150)
    if show is None:
        show = created and mpl.is_interactive()
    if show:
        plt.show()
        return None
    return ax
