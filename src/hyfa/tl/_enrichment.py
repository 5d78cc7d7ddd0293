"""Gene-set enrichment of metagene loadings, offline."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ._data_access import _format_names

__all__ = ["metagene_enrichment", "gene_set_library", "BUNDLED_LIBRARIES"]

#: Gene-set libraries shipped inside the ``blitzgsea`` package (``pip install 'hyfa[enrichment]'``).
BUNDLED_LIBRARIES: tuple[str, ...] = ("KEGG_2021_Human", "GO_Biological_Process_2023")
_METHODS = ("ranksum", "blitzgsea")
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENTREZ = re.compile(r"^\d+$")


def _blitzgsea_data() -> Path:
    spec = importlib.util.find_spec("blitzgsea")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The bundled gene-set libraries come with the optional dependency blitzgsea: "
            "pip install 'hyfa[enrichment]'. Or pass your own gene sets (a dict or a source/target table)."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def gene_set_library(name: str) -> dict[str, list[str]]:
    """Return a gene-set library shipped with ``blitzgsea`` as ``{set name: gene symbols}``, read offline.

    ``blitzgsea`` ships :data:`BUNDLED_LIBRARIES` (Enrichr's ``KEGG_2021_Human`` and
    ``GO_Biological_Process_2023``, human gene symbols) inside its package; they are read from there,
    never downloaded. Install with ``pip install 'hyfa[enrichment]'``.
    """
    if name not in BUNDLED_LIBRARIES:
        raise ValueError(
            f"Unknown gene-set library {name!r}; offline libraries: {', '.join(BUNDLED_LIBRARIES)}. "
            "Pass other libraries as a dict of set name -> genes or a source/target DataFrame."
        )
    path = _blitzgsea_data() / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed blitzgsea; reinstall it.")
    library = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.rstrip("\n").split("\t")
        genes = [g.split(",")[0].strip() for g in fields[2:] if g.strip()]
        if fields[0] and genes:
            library[fields[0]] = genes
    return library


def _as_sets(gene_sets, source: str, target: str) -> tuple[dict[str, list[str]], str]:
    """Return ``({set: genes}, library label)`` from a library name, a mapping or a source/target table."""
    if isinstance(gene_sets, str):
        return gene_set_library(gene_sets), gene_sets
    if isinstance(gene_sets, pd.DataFrame):
        missing = [c for c in (source, target) if c not in gene_sets.columns]
        if missing:
            raise ValueError(
                f"The gene-set table lacks column(s) {missing}; it has {list(gene_sets.columns)}. "
                "Pass source=/target= naming the set and gene columns."
            )
        grouped = gene_sets.groupby(source, sort=False)[target]
        return {str(k): [str(g) for g in v] for k, v in grouped}, "the gene-set table"
    if isinstance(gene_sets, Mapping):
        out = {}
        for k, v in gene_sets.items():
            if isinstance(v, str) or not isinstance(v, Iterable):
                raise TypeError(f"Gene set {k!r} must be a collection of gene names, got {type(v).__name__}.")
            out[str(k)] = [str(g) for g in v]
        return out, "the gene-set dict"
    raise TypeError(
        "gene_sets must be a library name, a dict of set name -> genes or a DataFrame with source/target "
        f"columns, got {type(gene_sets).__name__}."
    )


def _id_type(names: Iterable[str]) -> str:
    names = [str(n) for n in names][:200]
    if names and np.mean([bool(_ENSEMBL.match(n)) for n in names]) > 0.5:
        return "Ensembl gene IDs"
    if names and np.mean([bool(_ENTREZ.match(n)) for n in names]) > 0.5:
        return "Entrez gene IDs"
    return "gene symbols"


def _map_symbols(index: pd.Index, gene_symbols) -> pd.Index:
    symbols = pd.Series(gene_symbols)
    mapped = symbols.reindex(index)
    if mapped.isna().all():
        raise ValueError("`gene_symbols` maps none of the loadings' genes; index it by the loadings' index.")
    return pd.Index(
        [str(s) if isinstance(s, str) and s else str(g) for g, s in zip(index, mapped, strict=True)]
    )


def _ranksum(scores: np.ndarray, members: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (AUC, one-sided p) of a Mann-Whitney U test of each set's scores above the others' (normal approx)."""
    n = len(scores)
    ranks = stats.rankdata(scores)
    _, ties = np.unique(scores, return_counts=True)
    tie_term = (ties**3 - ties).sum() / (n * (n - 1)) if n > 1 else 0.0
    n1, n2 = sizes.astype(np.float64), (n - sizes).astype(np.float64)
    u = members @ ranks - n1 * (n1 + 1) / 2
    sd = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2 - 0.5) / sd
    pvalue = np.where(sd > 0, stats.norm.sf(z), 1.0)
    return u / (n1 * n2), pvalue


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Return Benjamini-Hochberg adjusted p-values (FDR) of ``p``."""
    n = len(p)
    order = np.argsort(p)
    adjusted = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.clip(adjusted, 0.0, 1.0)
    return out


def _blitz(
    scores: pd.Series, sets: dict[str, list[str]], min_size: int, max_size: int, permutations: int, seed: int
):
    import blitzgsea

    signature = pd.DataFrame({0: scores.index.astype(str), 1: scores.to_numpy(np.float64)})
    result = blitzgsea.gsea(
        signature, sets, permutations=permutations, min_size=min_size, max_size=max_size,
        processes=2, seed=seed, verbose=False, progress=False,  # processes=1 fails in blitzgsea 1.3.54
    )  # fmt: skip
    return result


def metagene_enrichment(
    loadings: pd.DataFrame,
    gene_sets: str | Mapping[str, Iterable[str]] | pd.DataFrame,
    *,
    method: str = "ranksum",
    min_size: int = 5,
    max_size: int = 500,
    absolute: bool = False,
    gene_symbols: Mapping[str, str] | pd.Series | None = None,
    source: str = "source",
    target: str = "target",
    n_leading: int = 10,
    permutations: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Return gene-set enrichment of each metagene's ranked loadings, one row per metagene and gene set.

    Each column of ``loadings`` (genes x metagenes, e.g. :meth:`hyfa.HYFA.get_metagene_loadings`) ranks the
    genes; a gene set is enriched in a metagene when its genes rank high, as in the metagene programs
    of :cite:p:`Vinas2023` (KEGG enrichment of Fig. 2).

    Two methods are offered.

    - ``"ranksum"`` (default, no extra dependency): a one-sided Mann-Whitney U (Wilcoxon rank-sum) test
      of the set's loadings above the other genes' (normal approximation with tie and continuity
      corrections), all sets of a metagene at once with one matrix product. The effect size is the AUC,
      the probability that a set gene outranks a background gene. It is fast, exact in its null
      (genes exchangeable), needs no permutations and suits the small gene panels of HYFA models.
    - ``"blitzgsea"``: preranked GSEA (running-sum enrichment score, gamma-approximated permutation null)
      by blitzgsea, which also ships the offline libraries :data:`BUNDLED_LIBRARIES`
      (``pip install 'hyfa[enrichment]'``). decoupler, the scverse enrichment API, is not required:
      its gene-set resources are downloaded at run time, but its source/target tables are accepted.

    The background is the genes of ``loadings``; sets are cut to them and kept when ``min_size`` to
    ``max_size`` genes remain. FDR is Benjamini-Hochberg over the sets of each metagene.

    Parameters
    ----------
    loadings
        Genes x metagenes scores, indexed by gene (higher = more strongly read by the metagene).
    gene_sets
        A library of :data:`BUNDLED_LIBRARIES` (needs blitzgsea), a dict of set name -> genes, or a
        DataFrame with one row per (set, gene), columns ``source`` and ``target`` as in decoupler.
    method
        ``"ranksum"`` or ``"blitzgsea"``.
    min_size, max_size
        Sizes of the sets (after cutting them to the loadings' genes) that are tested.
    absolute
        Rank genes by absolute loading (for signed loadings, e.g. ``summary="svd"``).
    gene_symbols
        Gene symbol per loadings gene (e.g. ``mdata["Lung"].var["gene_symbols"]``), for loadings indexed by
        Ensembl IDs when the sets use symbols.
    source, target
        Columns of a ``gene_sets`` table naming the set and the gene.
    n_leading
        Top-loading set genes listed in ``"genes"``.
    permutations, seed
        Permutations and seed of ``"blitzgsea"``.

    Returns
    -------
    DataFrame with columns ``metagene``, ``gene_set``, ``size`` (set genes among the loadings), ``score``
    (AUC for ``"ranksum"``, NES for ``"blitzgsea"``), ``pvalue``, ``fdr`` and ``genes`` (the set's
    top-loading genes, ``;``-separated), sorted by metagene and p-value.

    Examples
    --------
    >>> loadings = model.get_metagene_loadings()
    >>> hyfa.tl.metagene_enrichment(loadings, "KEGG_2021_Human").query("fdr < 0.05")
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}.")
    if not isinstance(loadings, pd.DataFrame) or loadings.shape[1] == 0 or loadings.shape[0] < 2:
        raise ValueError("`loadings` must be a non-empty genes x metagenes DataFrame (at least 2 genes).")
    if min_size < 1 or max_size < min_size:
        raise ValueError(f"Need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}.")
    sets, label = _as_sets(gene_sets, source, target)
    if not sets:
        raise ValueError(f"{label} holds no gene sets.")
    index = loadings.index.astype(str)
    if gene_symbols is not None:
        index = _map_symbols(loadings.index, gene_symbols)
    if index.has_duplicates:
        raise ValueError(
            f"Duplicated genes in `loadings`: {_format_names(index[index.duplicated()].unique())}."
        )
    universe = {g for genes in sets.values() for g in genes}
    overlap = index.isin(list(universe))
    if not overlap.any():
        have, want = _id_type(index), _id_type(universe)
        hint = (
            f"The loadings are indexed by {have} and {label} uses {want}; pass gene_symbols= (e.g. a var "
            "column of symbols) to map them."
            if have != want
            else f"Both look like {have}: check the species and the spelling (e.g. {index[0]!r})."
        )
        raise ValueError(f"None of the {len(index)} genes of `loadings` is in {label}. {hint}")
    position = pd.Series(np.arange(len(index)), index=index)
    names, member_rows = [], []
    for name, genes in sets.items():
        rows = np.unique(position.reindex(pd.Index(genes).unique()).dropna().to_numpy(np.int64))
        if min_size <= len(rows) <= max_size:
            names.append(name)
            member_rows.append(rows)
    if not names:
        raise ValueError(
            f"No set of {label} keeps {min_size} to {max_size} genes among the {len(index)} genes of "
            f"`loadings` ({int(overlap.sum())} of them are in any set); lower min_size or use more genes."
        )
    members = np.zeros((len(names), len(index)))
    for i, rows in enumerate(member_rows):
        members[i, rows] = 1.0
    sizes = members.sum(axis=1)

    frames = []
    for column in loadings.columns:
        scores = loadings[column].to_numpy(np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(f"`loadings[{column!r}]` has missing or infinite values.")
        if absolute:
            scores = np.abs(scores)
        order = np.argsort(-scores, kind="stable")
        leading = [";".join(index[order[np.isin(order, rows)][:n_leading]]) for rows in member_rows]
        if method == "ranksum":
            score, pvalue = _ranksum(scores, members, sizes)
            frame = pd.DataFrame(
                {"gene_set": names, "size": sizes.astype(int), "score": score, "pvalue": pvalue}
            )
        else:
            res = _blitz(pd.Series(scores, index=index), dict(zip(names, [list(index[r]) for r in member_rows], strict=True)),
                         min_size, max_size, permutations, seed)  # fmt: skip
            res = res.reindex(names)
            frame = pd.DataFrame(
                {"gene_set": names, "size": sizes.astype(int), "score": res["nes"].to_numpy(),
                 "pvalue": res["pval"].to_numpy()}
            )  # fmt: skip
        frame["genes"] = leading
        frame.insert(0, "metagene", str(column))
        p = frame["pvalue"].to_numpy(np.float64)
        finite = np.isfinite(p)
        fdr = np.full_like(p, np.nan)
        if finite.any():
            fdr[finite] = _benjamini_hochberg(p[finite])
        frame.insert(frame.columns.get_loc("pvalue") + 1, "fdr", fdr)
        frames.append(frame.sort_values("pvalue", kind="stable"))
    return pd.concat(frames, ignore_index=True)
