"""tensorQTL export (phenotype BED files), simulated genotypes with planted eQTLs, and the eQTL gain."""

import gzip
import importlib.util

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import hyfa


def _tissue(n_donors=12, genes=("g_b", "g_a", "g_c"), seed=0):
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(rng.normal(size=(n_donors, len(genes))).astype(np.float32))
    adata.obs_names = [f"GTEX-{i:03d}" for i in range(n_donors)]
    adata.var_names = list(genes)
    return adata


POSITIONS = pd.DataFrame(
    {
        "chr": ["chr2", "chr1", "chr1"],
        "start": [500, 2000, 100],
        "end": [900, 3000, 400],
        "strand": ["+", "-", "+"],
    },
    index=["g_b", "g_a", "g_c"],
)


def test_bed_round_trip_sort_and_tss(tmp_path):
    adata = _tissue()
    path = tmp_path / "lung.bed.gz"
    bed = hyfa.tl.write_phenotype_bed(adata, path, POSITIONS)
    with gzip.open(path, "rt") as handle:
        assert handle.readline().rstrip("\n").split("\t")[:5] == [
            "#chr",
            "start",
            "end",
            "phenotype_id",
            "GTEX-000",
        ]
    phenotypes, positions = hyfa.tl.read_phenotype_bed(path)
    # sorted by chromosome, then TSS; TSS strand-aware (g_a is on the minus strand: TSS = end)
    assert list(phenotypes.index) == ["g_c", "g_a", "g_b"]
    assert list(positions["pos"]) == [100, 3000, 500]
    assert (bed["start"] == bed["end"] - 1).all()
    np.testing.assert_array_equal(
        phenotypes.loc[list(adata.var_names)].to_numpy().T.astype(np.float32), adata.X
    )  # float32 exact
    assert list(phenotypes.columns) == list(adata.obs_names)
    with pytest.raises(FileExistsError):
        hyfa.tl.write_phenotype_bed(adata, path, POSITIONS)
    hyfa.tl.write_phenotype_bed(adata, path, POSITIONS, overwrite=True)


def test_bed_covariates_and_gtf(tmp_path):
    adata = _tissue()
    adata.obs["age"] = np.arange(adata.n_obs, dtype=float)
    gtf = tmp_path / "genes.gtf"
    lines = [
        "##description: test",
        'chr1\tHAVANA\tgene\t2000\t3000\t.\t-\t.\tgene_id "g_a.5"; gene_name "A";',
        'chr1\tHAVANA\ttranscript\t2000\t3000\t.\t-\t.\tgene_id "g_a.5"; transcript_id "t";',
        'chr2\tHAVANA\tgene\t500\t900\t.\t+\t.\tgene_id "g_b.1"; gene_name "B";',
        'chr1\tHAVANA\tgene\t100\t400\t.\t+\t.\tgene_id "g_c.2"; gene_name "C";',
    ]
    gtf.write_text("\n".join(lines) + "\n")
    positions = hyfa.tl.read_gene_positions(gtf)
    assert positions.loc["g_a.5", "tss"] == 3000 and positions.loc["g_b.1", "tss"] == 500
    bed = hyfa.tl.write_phenotype_bed(
        adata, tmp_path / "t.bed.gz", gtf, covariates=["age"], covariates_filename=tmp_path / "cov.txt"
    )
    assert list(bed["phenotype_id"]) == ["g_c", "g_a", "g_b"]  # matched without the version
    cov = pd.read_csv(tmp_path / "cov.txt", sep="\t", index_col=0)
    assert list(cov.index) == ["age"] and list(cov.columns) == list(adata.obs_names)


def test_bed_errors_before_writing(tmp_path):
    path = tmp_path / "x.bed.gz"
    adata = _tissue()
    with pytest.raises(ValueError, match="no position.*g_c"):
        hyfa.tl.write_phenotype_bed(adata, path, POSITIONS.drop("g_c"))
    with pytest.raises(ValueError, match="more than once.*g_a"):
        hyfa.tl.write_phenotype_bed(adata, path, pd.concat([POSITIONS, POSITIONS.loc[["g_a"]]]))
    with pytest.raises(ValueError, match="unknown chromosomes.*chrUn"):
        hyfa.tl.write_phenotype_bed(adata, path, POSITIONS.assign(chr=["chrUn", "chr1", "chr1"]))
    with pytest.raises(ValueError, match="not among the genotype sample IDs.*GTEX-011"):
        hyfa.tl.write_phenotype_bed(adata, path, POSITIONS, sample_ids=list(adata.obs_names[:11]))
    with pytest.raises(ValueError, match="too few"):
        hyfa.tl.write_phenotype_bed(adata[:5], path, POSITIONS)
    bad = adata.copy()
    bad.X[3, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite.*GTEX-003/g_a"):
        hyfa.tl.write_phenotype_bed(bad, path, POSITIONS)
    with pytest.raises(ValueError, match=r"\.bed\.gz"):
        hyfa.tl.write_phenotype_bed(adata, tmp_path / "x.bed", POSITIONS)
    assert not list(tmp_path.iterdir())
    mdata = __import__("mudata").MuData({"lung": adata, "liver": bad})
    with pytest.raises(ValueError, match="'liver'.*non-finite"):
        hyfa.tl.write_phenotype_beds(mdata, tmp_path, POSITIONS)
    assert not list(tmp_path.iterdir())  # the good tissue was not written either


def test_simulate_eqtl_truth():
    observed, truth, genotypes = hyfa.data.simulate_eqtl(n_donors=80, n_genes=10, n_variants=20, seed=2)
    table = truth.uns["eqtl"]
    assert genotypes.shape == (80, 200)
    assert set(np.unique(genotypes.X)) <= {0.0, 1.0, 2.0}
    per_gene = table.groupby("gene")["causal"].sum()
    kinds = table.groupby("gene")["kind"].first()
    assert (per_gene[kinds == "shared"] == 6).all() and (per_gene[kinds == "specific"] == 1).all()
    assert (per_gene[kinds == "none"] == 0).all()
    for tissue in observed.mod:  # the observed tissues are the truth at the observed donors
        np.testing.assert_array_equal(observed[tissue].X, truth[tissue][observed[tissue].obs_names].X)
        assert {"chr", "tss"} <= set(observed[tissue].var.columns)
    # without genetic effects, the same seed gives the same expression elsewhere
    plain, _ = hyfa.data.simulate(n_donors=80, n_tissues=6, n_genes=10, missing_rate=0.5, seed=2)
    affected = table[table["causal"] & (table["tissue"] == "tissue_0")]["gene"]
    others = [g for g in observed["tissue_0"].var_names if g not in set(affected)]
    np.testing.assert_array_equal(observed["tissue_0"][:, others].X, plain["tissue_0"][:, others].X)


def test_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(
        hyfa.tl.benjamini_hochberg(p), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5][:4], rtol=1e-12
    )


def _needs_tensorqtl():
    # not pytest.importorskip("tensorqtl"): tensorQTL 1.0.10 imports pandas-plink, which
    # hyfa.tl.map_cis_eqtl supplies when it is absent
    if importlib.util.find_spec("tensorqtl") is None:
        pytest.skip("tensorqtl is not installed (pip install 'hyfa[eqtl]')")


def test_eqtl_mapping_observed_vs_completed():
    """The completed cohort finds more true eGenes than the observed donors alone, with the FDR controlled.

    Imputed donors carry a shared cis-eQTL through the gene-level skip connection (``gene_skip``,
    the default), which reads the same gene in the donor's other tissues; without it they carry
    almost none of the gene-specific genetic signal and the completed cohort finds fewer eGenes.
    """
    _needs_tensorqtl()
    import scvi
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scvi.settings.seed = 0
    try:
        observed, truth, genotypes = hyfa.data.simulate_eqtl(
            n_donors=300, n_tissues=8, n_genes=40, n_variants=50, missing_rate=0.7, seed=0
        )
        hyfa.HYFA.setup_mudata(observed)
        model = hyfa.HYFA(
            observed, n_metagenes=8, n_factors=16, n_donor_latent=64, n_tissue_latent=16,
            n_metagene_latent=16, n_heads=4, n_head_dim=8, n_hidden_decoder=64,
        )  # fmt: skip
        model.train(max_epochs=150, batch_size=64, enable_progress_bar=False)
        completed = model.get_completed_cohort(tissues=["tissue_0", "tissue_1", "tissue_2", "tissue_3"])
        table = truth.uns["eqtl"]
        true = {"observed": 0, "completed": 0}
        false = dict(true)
        for tissue in completed.mod:
            assert completed[tissue].n_obs > observed[tissue].n_obs
            for setting, adata in {"observed": observed[tissue], "completed": completed[tissue]}.items():
                results = hyfa.tl.map_cis_eqtl(adata, genotypes, n_permutations=200, seed=0)
                assert {"pval_beta", "qval", "variant_id"} <= set(results.columns)
                scores = hyfa.tl.score_egenes(results, table, tissue, fdr=0.05)
                true[setting] += scores.loc["all", "true"]
                false[setting] += scores.loc["all", "false"]
        assert true["completed"] > true["observed"] > 0, (true, false)
        for setting in true:  # empirical FDR over the tissues (a tissue alone has a handful of eGenes)
            assert false[setting] / (true[setting] + false[setting]) <= 0.1, (setting, true, false)
    finally:
        torch.set_num_threads(threads)


def test_map_cis_eqtl_errors():
    _needs_tensorqtl()
    observed, _, genotypes = hyfa.data.simulate_eqtl(n_donors=40, n_genes=4, n_variants=10, seed=0)
    adata = observed["tissue_0"]
    with pytest.raises(ValueError, match="not among the genotype sample IDs"):
        hyfa.tl.map_cis_eqtl(adata, genotypes[:20], n_permutations=10)
    with pytest.raises(ValueError, match="too few"):
        hyfa.tl.map_cis_eqtl(adata[:5], genotypes, n_permutations=10)
