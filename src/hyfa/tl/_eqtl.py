"""cis-eQTL mapping with tensorQTL on one tissue's expression, and scoring eGenes against a planted truth.

tensorQTL is an optional dependency (``pip install "hyfa[eqtl]"``). Its version 1.0.10 imports
``pandas_plink`` at import time although only its PLINK reader needs it; when that package is
absent a placeholder is registered so that mapping from in-memory genotypes works (reading PLINK
files then raises an :class:`ImportError`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import types
from collections.abc import Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from ._bed import phenotype_bed


def _import_tensorqtl():
    """Return the ``tensorqtl.cis`` module, raising a clear :class:`ImportError` when tensorQTL is missing."""
    try:
        importlib.import_module("pandas_plink")
    except ImportError:
        placeholder = types.ModuleType("pandas_plink")

        def read_plink(*args, **kwargs):
            raise ImportError(
                "Reading PLINK files with tensorQTL needs pandas-plink: pip install pandas-plink."
            )

        placeholder.read_plink = read_plink
        sys.modules.setdefault("pandas_plink", placeholder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # tensorQTL prints a warning about R's qvalue
            return importlib.import_module("tensorqtl.cis")
    except ImportError as error:
        raise ImportError(f"cis-eQTL mapping needs tensorQTL: pip install 'hyfa[eqtl]' ({error}).") from error


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Return Benjamini-Hochberg adjusted p-values (q-values with the null proportion set to 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    n = len(p)
    order = np.argsort(p)
    adjusted = p[order] * n / np.arange(1, n + 1)
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def map_cis_eqtl(
    adata: AnnData,
    genotypes: AnnData,
    gene_positions: pd.DataFrame | str | None = None,
    layer: str | None = None,
    covariates: pd.DataFrame | None = None,
    window: int = 1_000_000,
    n_permutations: int = 1000,
    maf_threshold: float = 0.0,
    min_samples: int = 10,
    seed: int = 0,
) -> pd.DataFrame:
    """Return tensorQTL's per-gene permutation results (``cis.map_cis``) for one tissue, with q-values.

    Parameters
    ----------
    adata
        Donors x genes expression of one tissue (observed, imputed or completed).
    genotypes
        Donors x variants dosages with ``var`` columns ``chrom`` and ``pos`` (e.g. from
        :func:`hyfa.data.simulate_eqtl`); every donor of ``adata`` must be one of its donors.
    gene_positions
        As in :func:`hyfa.tl.phenotype_bed`; ``None`` takes ``chr`` and ``tss`` (or ``start``,
        ``end``, ``strand``) from ``adata.var``.
    layer
        Layer holding the expression; ``None`` uses ``X``.
    covariates
        Donors x covariates (numeric), regressed out of expression and genotypes.
    window
        cis window around the TSS, bp.
    n_permutations
        Permutations for the empirical and beta-approximated p-values.
    maf_threshold
        In-sample minor allele frequency filter.
    min_samples
        Fewest donors accepted (see :func:`hyfa.tl.phenotype_bed`).
    seed
        Seed of the permutations.

    Returns
    -------
    tensorQTL's table, one row per gene (index ``phenotype_id``): the top variant ``variant_id``,
    ``pval_nominal``, ``slope``, ``pval_perm``, ``pval_beta`` and more, plus ``qval``: the
    Benjamini-Hochberg adjusted ``pval_beta`` across genes (tensorQTL's Storey q-values need R).
    """
    cis = _import_tensorqtl()
    if gene_positions is None:
        gene_positions = adata.var
    n_cov = 0 if covariates is None else covariates.shape[1]
    bed = phenotype_bed(
        adata,
        gene_positions,
        layer=layer,
        sample_ids=genotypes.obs_names,
        chromosomes=None,
        min_samples=min_samples,
        n_covariates=n_cov,
    )
    missing = {"chrom", "pos"} - set(genotypes.var.columns)
    if missing:
        raise ValueError(f"genotypes.var needs the columns {sorted(missing)}.")
    unknown = set(bed["#chr"]) - set(genotypes.var["chrom"].astype(str))
    if unknown:
        raise ValueError(f"Genes lie on chromosomes without genotyped variants: {sorted(unknown)}.")
    phenotype_df = bed.set_index("phenotype_id").drop(columns=["#chr", "start", "end"]).astype(np.float32)
    phenotype_pos_df = pd.DataFrame(
        {"chr": bed["#chr"].to_numpy(), "pos": bed["end"].to_numpy()}, index=phenotype_df.index
    )
    genotype_df = pd.DataFrame(
        np.asarray(genotypes.X).T, index=genotypes.var_names, columns=genotypes.obs_names.astype(str)
    )
    variant_df = genotypes.var[["chrom", "pos"]].astype({"chrom": str})
    if covariates is not None:
        covariates = covariates.loc[phenotype_df.columns].astype(np.float32)
    with contextlib.redirect_stdout(io.StringIO()):
        results = cis.map_cis(
            genotype_df,
            variant_df,
            phenotype_df,
            phenotype_pos_df,
            covariates_df=covariates,
            nperm=n_permutations,
            window=window,
            maf_threshold=maf_threshold,
            seed=seed,
            verbose=False,
            warn_monomorphic=False,
        )
    results["qval"] = benjamini_hochberg(results["pval_beta"].fillna(1.0))
    return results


def score_egenes(results: pd.DataFrame, truth: pd.DataFrame, tissue: str, fdr: float = 0.05) -> pd.DataFrame:
    """Return true and false eGenes at ``qval <= fdr`` against planted eQTLs, by kind of eQTL.

    Parameters
    ----------
    results
        :func:`map_cis_eqtl` output for ``tissue``.
    truth
        ``truth.uns["eqtl"]`` of :func:`hyfa.data.simulate_eqtl`.
    tissue
        The tissue mapped.
    fdr
        q-value threshold.

    Returns
    -------
    One row per kind (``shared``, ``specific``, ``none``) and ``all``: ``tested`` genes,
    ``causal`` (genes with an eQTL in the tissue), ``true`` and ``false`` eGenes and
    ``empirical_fdr`` (false / all eGenes; 0 without eGenes). An eGene is true when the gene has a
    planted eQTL acting in ``tissue``; its top variant need not be the causal one.
    """
    table = truth[truth["tissue"] == tissue].set_index("gene")
    table = table.loc[table.index.intersection(results.index)]
    called = (results.loc[table.index, "qval"] <= fdr).to_numpy()
    causal = table["causal"].to_numpy(dtype=bool)
    rows = {}
    for kind in ["shared", "specific", "none", "all"]:
        mask = np.ones(len(table), bool) if kind == "all" else (table["kind"] == kind).to_numpy()
        true, false = int((called & causal & mask).sum()), int((called & ~causal & mask).sum())
        rows[kind] = {
            "tested": int(mask.sum()),
            "causal": int((causal & mask).sum()),
            "true": true,
            "false": false,
            "empirical_fdr": false / (true + false) if true + false else 0.0,
        }
    return pd.DataFrame.from_dict(rows, orient="index")
