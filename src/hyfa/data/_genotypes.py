"""Simulated genotypes and planted cis-eQTLs on top of :func:`hyfa.data.simulate`, with ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData

from ._simulate import simulate

#: Distance between consecutive genes of a chromosome; cis windows (``window``) never overlap.
_GENE_SPACING = 5_000_000
_FIRST_TSS = 1_000_000


def simulate_eqtl(
    n_donors: int = 300,
    n_tissues: int = 6,
    n_genes: int = 60,
    n_variants: int = 100,
    shared_fraction: float = 0.3,
    specific_fraction: float = 0.2,
    heritability: tuple[float, float] = (0.05, 0.3),
    maf: tuple[float, float] = (0.05, 0.5),
    window: int = 500_000,
    n_chromosomes: int = 2,
    missing_rate: float = 0.5,
    noise_sd: float = 0.3,
    n_latent: int = 4,
    min_tissues: int = 2,
    seed: int = 0,
) -> tuple[MuData, MuData, AnnData]:
    r"""Return multi-tissue expression with planted cis-eQTLs, its ground truth and the donors' genotypes.

    Expression is :func:`hyfa.data.simulate`'s (Gaussian, same arguments and ``seed``), plus an
    additive genetic effect added to every donor x tissue pair before tissues are masked (the
    masking does not depend on expression, so the observed pairs are the same). Each gene gets
    ``n_variants`` biallelic variants within ``window`` bp of its TSS, with minor allele
    frequencies uniform in ``maf`` and dosages :math:`g \sim \mathrm{Binomial}(2, f)`, independent
    across variants (no linkage disequilibrium). A fraction ``shared_fraction`` of the genes gets
    one causal variant acting in every tissue (same sign, tissue-dependent size), a fraction
    ``specific_fraction`` one acting in a single tissue, and the rest none. In tissue ``t`` a
    causal variant explains a fraction :math:`h^2_{t}` (uniform in ``heritability``) of the gene's
    variance: it adds :math:`\beta_{t} (g - 2f) / \sqrt{2f(1-f)}` with
    :math:`\beta_t = \pm s_{gt} \sqrt{h^2_t / (1 - h^2_t)}`, :math:`s_{gt}` the gene's standard
    deviation across donors in that tissue before the effect.

    Parameters
    ----------
    n_donors, n_tissues, n_genes, missing_rate, noise_sd, n_latent, min_tissues, seed
        As in :func:`hyfa.data.simulate`.
    n_variants
        Variants per gene window.
    shared_fraction, specific_fraction
        Fractions of genes with an eQTL in every tissue, and in one tissue only.
    heritability
        Range of the variance fraction explained by a causal variant in a tissue where it acts.
    maf
        Range of the minor allele frequencies.
    window
        Variants lie within ``window`` bp of their gene's TSS (map with a cis window at least as wide).
    n_chromosomes
        Genes are dealt round-robin to chromosomes ``chr1``, ``chr2``, ...; genes of a chromosome
        lie 5 Mb apart (``+`` strand).

    Returns
    -------
    ``(observed, truth, genotypes)``:

    - ``observed``, ``truth``: as :func:`hyfa.data.simulate`, with the genetic effects included;
      every tissue's ``var`` has the gene positions ``chr``, ``start``, ``end``, ``strand``, ``tss``
      (ready for :func:`hyfa.tl.write_phenotype_bed`). ``truth.uns["eqtl"]`` is a DataFrame with
      one row per (gene, tissue): ``gene``, ``tissue``, ``kind`` (``"shared"``, ``"specific"`` or
      ``"none"`` for the gene), ``causal`` (whether the gene has an eQTL in that tissue),
      ``variant``, ``beta`` and ``h2``.
    - ``genotypes``: donors x variants AnnData of dosages (``float32``, 0/1/2) with ``var``
      columns ``chrom``, ``pos``, ``maf`` and ``gene`` (the gene whose window holds it); transpose
      it for tensorQTL's variants x samples ``genotype_df``.

    Examples
    --------
    >>> import hyfa
    >>> observed, truth, genotypes = hyfa.data.simulate_eqtl(n_donors=50, n_genes=10, n_variants=20)
    >>> genotypes.shape
    (50, 200)
    """
    for name, value in {"n_variants": n_variants, "n_chromosomes": n_chromosomes, "window": window}.items():
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not (0 <= shared_fraction and 0 <= specific_fraction and shared_fraction + specific_fraction <= 1):
        raise ValueError("shared_fraction and specific_fraction must be non-negative and sum to at most 1.")
    if not 0 <= heritability[0] <= heritability[1] < 1:
        raise ValueError(f"heritability must satisfy 0 <= low <= high < 1, got {heritability!r}.")
    if not 0 < maf[0] <= maf[1] <= 0.5:
        raise ValueError(f"maf must satisfy 0 < low <= high <= 0.5, got {maf!r}.")
    observed, truth = simulate(
        n_donors=n_donors,
        n_tissues=n_tissues,
        n_genes=n_genes,
        n_latent=n_latent,
        missing_rate=missing_rate,
        noise_sd=noise_sd,
        min_tissues=min_tissues,
        seed=seed,
    )
    rng = np.random.default_rng([seed, 7])  # a stream of its own: simulate's draws are unchanged
    genes, tissues = truth[next(iter(truth.mod))].var_names, list(truth.mod)
    positions = _gene_positions(genes, n_chromosomes)
    genotypes = _genotypes(truth.obs_names, positions, n_variants, maf, window, rng)

    kind = rng.permutation(
        np.repeat(
            ["shared", "specific", "none"],
            _counts(n_genes, [shared_fraction, specific_fraction]),
        )
    )
    rows = []
    for g, gene in enumerate(genes):
        candidates = np.flatnonzero(
            (genotypes.var["gene"] == gene).to_numpy() & (genotypes.var["maf"] >= 0.1)
        )
        if kind[g] == "none" or not len(candidates):
            rows += [
                (gene, t, "none" if kind[g] == "none" else kind[g], False, None, 0.0, 0.0) for t in tissues
            ]
            continue
        v = int(rng.choice(candidates))
        sign = rng.choice([-1.0, 1.0])
        acting = set(tissues) if kind[g] == "shared" else {tissues[rng.integers(n_tissues)]}
        dosage = genotypes.X[:, v].astype(np.float64)
        f = float(genotypes.var["maf"].iloc[v])
        standardized = (dosage - 2 * f) / np.sqrt(2 * f * (1 - f))
        for tissue in tissues:
            if tissue not in acting:
                rows.append((gene, tissue, kind[g], False, genotypes.var_names[v], 0.0, 0.0))
                continue
            h2 = rng.uniform(*heritability)
            scale = float(np.std(truth[tissue].X[:, g]))
            beta = sign * scale * np.sqrt(h2 / (1 - h2))
            effect = (beta * standardized).astype(np.float32)
            truth[tissue].X[:, g] += effect
            truth[tissue].layers["mean"][:, g] += effect
            donors = truth.obs_names.get_indexer(observed[tissue].obs_names)
            observed[tissue].X[:, g] += effect[donors]
            rows.append((gene, tissue, kind[g], True, genotypes.var_names[v], float(beta), float(h2)))
    for data in (observed, truth):
        for tissue in tissues:
            data[tissue].var = data[tissue].var.join(positions)
    table = pd.DataFrame(rows, columns=["gene", "tissue", "kind", "causal", "variant", "beta", "h2"])
    truth.uns["eqtl"] = table
    return observed, truth, genotypes


def _counts(n: int, fractions: list[float]) -> list[int]:
    counts = [int(round(f * n)) for f in fractions]
    return counts + [n - sum(counts)]


def _gene_positions(genes: pd.Index, n_chromosomes: int) -> pd.DataFrame:
    k = np.arange(len(genes))
    tss = _FIRST_TSS + (k // n_chromosomes) * _GENE_SPACING
    return pd.DataFrame(
        {
            "chr": [f"chr{1 + i % n_chromosomes}" for i in k],
            "start": tss,
            "end": tss + 10_000,
            "strand": "+",
            "tss": tss,
        },
        index=genes,
    )


def _genotypes(donors, positions, n_variants, maf, window, rng) -> AnnData:
    n_genes = len(positions)
    frequencies = rng.uniform(*maf, size=(n_genes, n_variants))
    offsets = np.sort(rng.integers(-window, window + 1, size=(n_genes, n_variants)), axis=1)
    dosages = rng.binomial(2, frequencies.ravel(), size=(len(donors), n_genes * n_variants))
    var = pd.DataFrame(
        {
            "chrom": np.repeat(positions["chr"].to_numpy(), n_variants),
            "pos": (positions["tss"].to_numpy()[:, None] + offsets).ravel().astype(np.int64),
            "maf": frequencies.ravel(),
            "gene": np.repeat(positions.index.to_numpy(), n_variants),
        }
    )
    var.index = [
        f"{c}_{p}_{g}_{i % n_variants}"
        for i, (c, p, g) in enumerate(zip(var["chrom"], var["pos"], var["gene"], strict=True))
    ]
    return AnnData(X=dosages.astype(np.float32), obs=pd.DataFrame(index=donors.copy()), var=var)
