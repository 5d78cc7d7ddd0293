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


def _circular_layout(nodes: list[str], radius: float = 1.0) -> dict[str, np.ndarray]:
    angles = np.linspace(0, 2 * np.pi, len(nodes), endpoint=False) + np.pi / 2
    return {n: radius * np.array([np.cos(a), np.sin(a)]) for n, a in zip(nodes, angles, strict=True)}


def _unit_disc(pos: dict[str, Any]) -> dict[str, np.ndarray]:
    """Return the positions centred on their mean and scaled so that the farthest one is at radius 1."""
    names = list(pos)
    xy = np.array([np.asarray(pos[n], dtype=np.float64) for n in names])
    xy -= xy.mean(axis=0)
    scale = np.linalg.norm(xy, axis=1).max()
    if scale > 0:
        xy /= scale
    return dict(zip(names, xy, strict=True))


def _spread(xy: np.ndarray, spacing: float, iterations: int = 300) -> np.ndarray:
    """Return the positions pushed apart, pair by pair, until no two are closer than ``spacing``."""
    xy = np.array(xy, dtype=np.float64)
    n = len(xy)
    # coincident positions part along a fixed direction per node
    tie = np.stack([np.cos(np.arange(n)), np.sin(np.arange(n))], axis=1)
    for _ in range(iterations):
        diff = xy[:, None, :] - xy[None, :, :]
        dist = np.hypot(diff[..., 0], diff[..., 1])
        np.fill_diagonal(dist, np.inf)
        short = np.maximum(spacing - dist, 0.0)
        if not short.any():
            break
        unit = np.where(dist[..., None] > 1e-12, diff / np.maximum(dist, 1e-12)[..., None], tie[:, None, :])
        xy += 0.5 * (short[..., None] * unit).sum(axis=1)
    return xy


def _pack(discs: list[float], gap: float) -> list[np.ndarray]:
    """Return centres for discs of the given radii, largest first.

    The first disc is at the origin; each next one at the first of 24 angles round it, on the nearest ring,
    where it overlaps none placed before.
    """
    centres = [np.zeros(2)]
    for r in discs[1:]:
        ring, found = discs[0] + gap + r, None
        while found is None:
            for angle in np.pi / 2 + np.linspace(0, 2 * np.pi, 24, endpoint=False):
                c = ring * np.array([np.cos(angle), np.sin(angle)])
                if all(np.hypot(*(c - o)) >= r + ro + gap for o, ro in zip(centres, discs, strict=False)):
                    found = c
                    break
            ring += r
        centres.append(found)
    return centres


def _layout(nodes: list[str], edges: pd.DataFrame, layout: str, seed: int) -> dict[str, np.ndarray]:
    """Return positions of the tissues with an edge in the unit disc and of those without on a ring at 1.2.

    Each connected part of the edge graph is laid out on its own, in a disc whose area grows with its
    number of tissues, and the discs are packed round the largest. ``"kamada_kawai"`` (and ``"auto"`` with
    networkx): a Kamada-Kawai layout of the part, started from a spring layout seeded by ``seed``.
    ``"spring"``: a spring layout weighted by r. ``"circular"`` (and ``"auto"`` without networkx): every
    tissue on one circle.
    """
    if layout == "circular":
        return _circular_layout(nodes)
    try:
        import networkx as nx
    except ImportError:
        if layout != "auto":
            raise ImportError(f"layout={layout!r} needs networkx: pip install networkx.") from None
        return _circular_layout(nodes)
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    for s, t, w in edges[["source", "target", "value"]].itertuples(index=False):
        weight = max(float(w), 1e-3)
        graph.add_edge(s, t, weight=weight + (graph[s][t]["weight"] if graph.has_edge(s, t) else 0.0))
    order = {n: i for i, n in enumerate(nodes)}
    parts = [sorted(p, key=order.get) for p in nx.connected_components(graph) if len(p) > 1]
    parts.sort(key=lambda p: (-len(p), order[p[0]]))
    radii = [np.sqrt(len(p)) for p in parts]
    pos = {}
    for part, radius, centre in zip(parts, radii, _pack(radii, gap=0.5) if parts else [], strict=True):
        sub = graph.subgraph(part)
        start = nx.spring_layout(sub, weight="weight", seed=seed)
        if layout == "spring":
            k = 2.0 / np.sqrt(len(part))
            placed = nx.spring_layout(sub, k=k, pos=start, iterations=300, weight="weight", seed=seed)
        else:
            placed = nx.kamada_kawai_layout(sub, pos=start, weight=None)
        placed = _unit_disc(placed)
        xy = _spread(np.array([placed[n] for n in part]), spacing=1.6 / np.sqrt(len(part)))
        xy = np.array(list(_unit_disc(dict(zip(part, xy, strict=True))).values()))
        pos.update({n: centre + radius * p for n, p in zip(part, xy, strict=True)})
    if pos:
        pos = _unit_disc(pos)
    isolated = [n for n in nodes if n not in pos]
    if isolated:
        pos.update(_circular_layout(isolated, radius=1.2))
    return pos


def _renderer(figure):
    canvas = figure.canvas
    if hasattr(canvas, "get_renderer"):
        return canvas.get_renderer()
    return figure._get_renderer() if hasattr(figure, "_get_renderer") else None


def _overlap(a, b) -> float:
    """Return the area shared by two display-space bounding boxes."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _draw_labels(ax: Axes, names: list[str], xy: np.ndarray, radii: np.ndarray, all_xy, all_radii, fontsize):
    """Label the nodes ``names`` at ``xy``, each beside its node (radius in points) where it overlaps least.

    Candidate places run round the node starting from the side facing away from the centre of the plot;
    the first that overlaps no node and no label placed before (and stays within the axes) is taken, else
    the one with the least overlap.
    """
    from matplotlib.transforms import Bbox

    ax.apply_aspect()
    renderer = _renderer(ax.figure)
    px = ax.figure.dpi / 72.0
    centres = ax.transData.transform(np.asarray(all_xy, dtype=np.float64).reshape(-1, 2))
    taken = [
        Bbox.from_extents(x - r * px, y - r * px, x + r * px, y + r * px)
        for (x, y), r in zip(centres, all_radii, strict=True)
    ]
    frame = ax.get_window_extent(renderer) if renderer is not None else None
    style = {"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}
    for name, (x, y), radius in zip(names, xy, radii, strict=True):
        outward = np.arctan2(y, x) if np.hypot(x, y) > 1e-9 else np.pi / 2
        angles = outward + np.deg2rad([0, 45, -45, 90, -90, 135, -135, 180])
        best = None
        for scale in (1.0, 2.2):
            for angle in angles:
                c, s = np.cos(angle), np.sin(angle)
                gap = radius + 2.0
                ha = "left" if c > 0.38 else "right" if c < -0.38 else "center"
                va = "bottom" if s > 0.38 else "top" if s < -0.38 else "center"
                label = ax.annotate(
                    name, (x, y), xytext=(scale * gap * c, scale * gap * s), textcoords="offset points",
                    ha=ha, va=va, fontsize=fontsize, bbox=style, zorder=4,
                )  # fmt: skip
                if renderer is None:
                    best = (0.0, label, None)
                    break
                box = label.get_window_extent(renderer).expanded(1.05, 1.1)
                cost = sum(_overlap(box, other) for other in taken)
                if frame is not None:
                    cost += box.width * box.height - _overlap(box, frame)
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, label, box)
                else:
                    label.remove()
                if cost == 0:
                    break
            if best[0] == 0:
                break
        if best[2] is not None:
            taken.append(best[2])


def predictability_network(
    result: Any,
    metric: str = "per-gene",
    stat: str = "mean",
    *,
    threshold: float = 0.3,
    groups: pd.Series | dict | None = None,
    layout: str = "auto",
    n_labels: int | None = 15,
    isolated: bool = True,
    seed: int = 0,
    figsize: tuple[float, float] | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike | None = None,
) -> Axes | None:
    """Return a network of cross-tissue predictability: an arrow source -> target where its Pearson r >= ``threshold``.

    Arrow width and colour grow with r; a tissue's node grows with its strength (the sum of r over its
    arrows, in and out). The tissues with an arrow fill the centre: each set of tissues linked by arrows
    gets a disc of its own (area growing with its size; the discs packed round the largest), inside which
    networkx places them (``layout="auto"`` or ``"kamada_kawai"``: evenly spread, linked tissues near
    each other; ``"spring"``: a spring layout that pulls well-predicting pairs together), then nudged
    apart so that no two crowd. The tissues without an arrow sit small on a ring around them. Without
    networkx, ``"auto"`` places every tissue on a circle (as ``"circular"`` does). Only the ``n_labels``
    strongest tissues are labelled, each label beside its node on the side, tried from the one facing
    away from the centre, where it overlaps the fewest nodes and labels (a white box keeps it readable
    over the arrows).

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
        ``"auto"``, ``"kamada_kawai"``, ``"spring"`` or ``"circular"``.
    n_labels
        Number of tissues labelled: those of largest strength among the tissues with an arrow (ties in
        the order of the result). ``None`` labels every tissue drawn, those without an arrow included;
        ``0`` none.
    isolated
        Draw the tissues without an arrow (small, on the outer ring); ``False`` leaves them out.
    seed
        Seed of the layout (the same seed gives the same positions).
    figsize, ax, show, save
        As in :func:`predictability_heatmap`.

    Returns
    -------
    The axes (one :class:`~matplotlib.patches.FancyArrowPatch` per edge in ``ax.patches``, one
    :class:`~matplotlib.text.Annotation` per label in ``ax.texts``, and the nodes as the one collection
    in ``ax.collections``, in the order of the result), or ``None`` when shown.
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    if layout not in ("auto", "kamada_kawai", "spring", "circular"):
        raise ValueError(f"layout must be 'auto', 'kamada_kawai', 'spring' or 'circular', got {layout!r}.")
    if n_labels is not None and (isinstance(n_labels, bool) or int(n_labels) != n_labels or n_labels < 0):
        raise ValueError(f"n_labels must be a non-negative integer or None, got {n_labels!r}.")
    matrix = _matrix(result, metric, stat)
    nodes = list(dict.fromkeys([*matrix.index, *matrix.columns]))
    stacked = matrix.stack().rename("value").reset_index()
    stacked.columns = ["source", "target", "value"]
    edges = stacked[(stacked["value"] >= threshold) & (stacked["source"] != stacked["target"])]
    edges = edges.sort_values("value", kind="stable")
    strength = (
        pd.concat([edges.groupby("source")["value"].sum(), edges.groupby("target")["value"].sum()])
        .groupby(level=0)
        .sum()
        .reindex(nodes, fill_value=0.0)
    )
    linked = [n for n in nodes if n in set(edges["source"]) | set(edges["target"])]
    n_isolated = len(nodes) - len(linked)
    if not isolated:
        nodes = linked
        strength = strength.loc[nodes]
    pos = _layout(nodes, edges, layout, seed)

    created = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (8.0, 7.0))
    if groups is not None:
        groups = pd.Series(groups).reindex(nodes)
        labels = pd.unique(groups.dropna())
        palette = mpl.colormaps["tab20"]
        colour = {g: palette(i % 20) for i, g in enumerate(labels)}
        node_colors = [colour.get(g, (0.7, 0.7, 0.7, 1.0)) for g in groups]
    else:
        node_colors = ["0.75"] * len(nodes)
    xy = np.array([pos[n] for n in nodes]).reshape(-1, 2)
    top = float(strength.max()) if len(strength) and strength.max() > 0 else 1.0
    sizes = np.where(strength.to_numpy() > 0, 50.0 + 350.0 * strength.to_numpy() / top, 22.0)
    radii = dict(zip(nodes, np.sqrt(sizes) / 2, strict=True))  # marker radius in points
    ax.scatter(xy[:, 0], xy[:, 1], s=sizes, c=node_colors, edgecolors="0.2", linewidths=0.6, zorder=3)
    if len(edges):
        lo, hi = float(edges["value"].min()), float(edges["value"].max())
        norm = mpl.colors.Normalize(vmin=threshold, vmax=max(hi, threshold + 1e-6))
        cmap = mpl.colormaps["viridis"]
        for s, t, w in edges.itertuples(index=False):
            ax.add_patch(
                mpl.patches.FancyArrowPatch(
                    pos[s], pos[t], arrowstyle="-|>", mutation_scale=8, shrinkA=radii[s] + 1,
                    shrinkB=radii[t] + 1, connectionstyle="arc3,rad=0.12", color=cmap(norm(w)),
                    linewidth=0.5 + 2.0 * (w - lo) / max(hi - lo, 1e-9), alpha=0.75, zorder=2,
                )
            )  # fmt: skip
        ax.figure.colorbar(
            mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6,
            label=f"{stat} {_LABELS.get(metric, metric)}",
        )  # fmt: skip
    if groups is not None and len(labels):
        handles = [mpl.lines.Line2D([], [], marker="o", ls="", color=colour[g], label=str(g)) for g in labels]
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.25, 0.5))
    pad = 0.2
    lim = (xy.min(axis=0) - pad, xy.max(axis=0) + pad) if len(xy) else (np.full(2, -1.0), np.full(2, 1.0))
    ax.set_xlim(lim[0][0], lim[1][0])
    ax.set_ylim(lim[0][1], lim[1][1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_axis_off()
    title = f"{len(edges)} edges with r >= {threshold:.3g}"
    if isolated and n_isolated:
        title += f"; {n_isolated} tissue{'s' if n_isolated > 1 else ''} without one (small nodes)"
    ax.set_title(title, fontsize=9)
    if n_labels is None:
        shown = nodes
    else:
        ranked = strength[strength > 0].sort_values(ascending=False, kind="stable")
        shown = list(ranked.index[: int(n_labels)])
    if shown:
        fontsize = 7 if len(shown) <= 30 else 6
        idx = [nodes.index(n) for n in shown]
        _draw_labels(
            ax, shown, xy[idx], np.array([radii[n] for n in shown]), xy, list(radii.values()), fontsize
        )
    return _finish(ax, created, show, save)
