"""Cross-tissue predictability drawn as a heatmap and as a network (:func:`hyfa.tl.predictability`)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["predictability_heatmap", "predictability_network"]

_LABELS = {"per-gene": "per-gene Pearson r", "per-sample": "per-sample Pearson r"}


def _matrix(result: Any, metric: str, stat: str) -> pd.DataFrame:
    """Return the sources x targets matrix of a :class:`hyfa.tl.Predictability` or of a square DataFrame."""
    if isinstance(result, pd.DataFrame):
        return result.astype(np.float64)
    if not hasattr(result, "matrix"):
        raise TypeError(
            f"Expected the result of hyfa.tl.predictability or a DataFrame, got {type(result).__name__}."
        )
    return result.matrix(metric, stat)


def _finish(ax: Axes, created: bool, show: bool | None, save) -> Axes | None:
    import matplotlib.pyplot as plt

    if save is not None:
        ax.figure.savefig(save, bbox_inches="tight", dpi=150)
    if show is None:
        show = created and save is None and plt.isinteractive()
    if show:
        plt.show()
        return None
    return ax


def predictability_heatmap(
    result: Any,
    metric: str = "per-gene",
    stat: str = "mean",
    *,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Return a heatmap of cross-tissue predictability: sources (rows) x targets (columns), coloured by Pearson r.

    Parameters
    ----------
    result
        The result of :func:`hyfa.tl.predictability`, or a sources x targets DataFrame.
    metric
        ``"per-gene"`` or ``"per-sample"`` Pearson r.
    stat
        ``"mean"`` or ``"median"`` over genes (or donors).
    cmap, vmin, vmax
        Colour map and its limits. Unscored pairs (diagonal, too few donors) are blank.
    figsize, ax
        Figure size of a new figure, or the axes to draw on.
    show, save
        Show the figure (default: when a new figure is drawn interactively); save it to this path.

    Returns
    -------
    The axes (one image of ``n_sources x n_targets`` cells), or ``None`` when shown.
    """
    import matplotlib.pyplot as plt

    matrix = _matrix(result, metric, stat)
    matrix = matrix.loc[matrix.notna().any(axis=1), matrix.notna().any(axis=0)]
    if matrix.size == 0:
        raise ValueError("Nothing to draw: no scored (source, target) pair.")
    created = ax is None
    if ax is None:
        n_rows, n_cols = matrix.shape
        size = figsize or (min(3 + 0.22 * n_cols, 24.0), min(2.5 + 0.2 * n_rows, 22.0))
        _, ax = plt.subplots(figsize=size)
    image = ax.imshow(np.ma.masked_invalid(matrix.to_numpy()), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    fontsize = 8 if max(matrix.shape) <= 30 else 6
    ax.set_xticks(np.arange(matrix.shape[1]), labels=matrix.columns, rotation=90, fontsize=fontsize)
    ax.set_yticks(np.arange(matrix.shape[0]), labels=matrix.index, fontsize=fontsize)
    ax.grid(False)
    ax.set_xlabel("target tissue")
    ax.set_ylabel("source tissue")
    ax.figure.colorbar(image, ax=ax, label=f"{stat} {_LABELS.get(metric, metric)}", shrink=0.7)
    return _finish(ax, created, show, save)


def _circular_layout(nodes: list[str]) -> dict[str, np.ndarray]:
    angles = np.linspace(0, 2 * np.pi, len(nodes), endpoint=False) + np.pi / 2
    return {n: np.array([np.cos(a), np.sin(a)]) for n, a in zip(nodes, angles, strict=True)}


def _layout(nodes: list[str], edges: pd.DataFrame, layout: str, seed: int) -> dict[str, np.ndarray]:
    """Return node positions: a networkx spring layout weighted by r (edgeless nodes on an outer ring), else a circle."""
    if layout == "circular":
        return _circular_layout(nodes)
    try:
        import networkx as nx
    except ImportError:
        if layout == "spring":
            raise ImportError("layout='spring' needs networkx: pip install networkx.") from None
        return _circular_layout(nodes)
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    for s, t, w in edges[["source", "target", "value"]].itertuples(index=False):
        weight = max(float(w), 1e-3)
        graph.add_edge(s, t, weight=weight + (graph[s][t]["weight"] if graph.has_edge(s, t) else 0.0))
    # Connected tissues by a spring layout spread over the unit disc; isolated ones on a ring around it.
    connected = [n for n in nodes if graph.degree(n) > 0]
    pos = {}
    if connected:
        sub = graph.subgraph(connected)
        spread = 2.0 / np.sqrt(len(connected))
        pos = {
            n: np.asarray(p) for n, p in nx.spring_layout(sub, k=spread, weight="weight", seed=seed).items()
        }
    isolated = [n for n in nodes if n not in pos]
    if isolated:
        pos.update({n: 1.35 * p for n, p in _circular_layout(isolated).items()})
    return pos


def predictability_network(
    result: Any,
    metric: str = "per-gene",
    stat: str = "mean",
    *,
    threshold: float = 0.3,
    groups: pd.Series | dict | None = None,
    layout: str = "auto",
    seed: int = 0,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Return a network of cross-tissue predictability: an arrow source -> target where its Pearson r >= ``threshold``.

    Arrow width and colour grow with r. Nodes are the tissues of the result (or of ``groups``);
    they are placed by a networkx spring layout weighted by r when networkx is installed
    (``layout="auto"`` or ``"spring"``), else on a circle (``"circular"``).

    Parameters
    ----------
    result
        The result of :func:`hyfa.tl.predictability`, or a sources x targets DataFrame.
    metric, stat
        Score drawn, as in :func:`predictability_heatmap`.
    threshold
        Smallest r drawn as an edge.
    groups
        Group of each tissue (e.g. ``hyfa.tl.gtex_organ_systems(tissues)``) to colour the nodes by.
    layout
        ``"auto"``, ``"spring"`` or ``"circular"``.
    seed
        Seed of the spring layout.
    figsize, ax, show, save
        As in :func:`predictability_heatmap`.

    Returns
    -------
    The axes (one :class:`~matplotlib.patches.FancyArrowPatch` per edge in ``ax.patches``), or ``None``
    when shown.
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    if layout not in ("auto", "spring", "circular"):
        raise ValueError(f"layout must be 'auto', 'spring' or 'circular', got {layout!r}.")
    matrix = _matrix(result, metric, stat)
    nodes = list(dict.fromkeys([*matrix.index, *matrix.columns]))
    stacked = matrix.stack().rename("value").reset_index()
    stacked.columns = ["source", "target", "value"]
    edges = stacked[(stacked["value"] >= threshold) & (stacked["source"] != stacked["target"])]
    edges = edges.sort_values("value", kind="stable")
    pos = _layout(nodes, edges, layout, seed)

    created = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (7.0, 7.0))
    if groups is not None:
        groups = pd.Series(groups).reindex(nodes)
        labels = pd.unique(groups.dropna())
        palette = mpl.colormaps["tab20"]
        colour = {g: palette(i % 20) for i, g in enumerate(labels)}
        node_colors = [colour.get(g, (0.7, 0.7, 0.7, 1.0)) for g in groups]
    else:
        node_colors = ["0.75"] * len(nodes)
    xy = np.array([pos[n] for n in nodes])
    ax.scatter(xy[:, 0], xy[:, 1], s=120, c=node_colors, edgecolors="0.2", linewidths=0.6, zorder=3)
    if len(edges):
        lo, hi = float(edges["value"].min()), float(edges["value"].max())
        norm = mpl.colors.Normalize(vmin=threshold, vmax=max(hi, threshold + 1e-6))
        cmap = mpl.colormaps["viridis"]
        for s, t, w in edges.itertuples(index=False):
            ax.add_patch(
                mpl.patches.FancyArrowPatch(
                    pos[s], pos[t], arrowstyle="-|>", mutation_scale=8, shrinkA=7, shrinkB=7,
                    connectionstyle="arc3,rad=0.12", color=cmap(norm(w)),
                    linewidth=0.5 + 2.5 * (w - lo) / max(hi - lo, 1e-9), alpha=0.8, zorder=2,
                )
            )  # fmt: skip
        ax.figure.colorbar(
            mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6,
            label=f"{stat} {_LABELS.get(metric, metric)}",
        )  # fmt: skip
    fontsize = 8 if len(nodes) <= 30 else 6
    for n, (x, y) in zip(nodes, xy, strict=True):
        ax.annotate(
            n, (x, y), xytext=(0, 7), textcoords="offset points", ha="center", fontsize=fontsize, zorder=4
        )
    if groups is not None and len(labels):
        handles = [mpl.lines.Line2D([], [], marker="o", ls="", color=colour[g], label=str(g)) for g in labels]
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.25, 0.5))
    pad = 0.15
    ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
    ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    ax.set_axis_off()
    ax.set_title(f"{len(edges)} edges with r >= {threshold:.3g}", fontsize=9)
    return _finish(ax, created, show, save)
