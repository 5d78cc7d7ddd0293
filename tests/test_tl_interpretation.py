"""Interpretation tools: embeddings as AnnData, cross-tissue predictability, metagene loadings and enrichment."""

import warnings

import anndata as ad
import matplotlib
import mudata as md
import numpy as np
import pandas as pd
import pytest
import torch
from hyfa_testing import TINY

import hyfa

matplotlib.use("Agg")


# -- a linear imputer with the model's public interface, to test predictability without training ------------


class LinearImputer:
    """Predicts a target tissue from the source tissues by least squares fitted on ``fit_donors``."""

    def __init__(self, mdata, fit_donors):
        self.adata = mdata
        self.tissues = list(mdata.mod)
        self.genes = list(mdata.mod[self.tissues[0]].var_names)
        self.fit_donors = pd.Index(fit_donors)
        self.calls = []

    def _x(self, tissue, donors):
        return np.asarray(self.adata.mod[tissue][list(donors)].X, dtype=np.float64)

    def get_imputed_expression(
        self, mdata=None, target_tissues=None, source_tissues=None, donors=None, **kwargs
    ):
        self.calls.append((tuple(source_tissues), tuple(target_tissues)))
        (source,) = source_tissues
        out = {}
        for target in target_tissues:
            both = self.adata.mod[source].obs_names.intersection(self.adata.mod[target].obs_names)
            fit = both.intersection(self.fit_donors)
            design = np.column_stack([self._x(source, fit), np.ones(len(fit))])
            coef, *_ = np.linalg.lstsq(design, self._x(target, fit), rcond=None)
            x = np.column_stack([self._x(source, donors), np.ones(len(donors))])
            out[target] = ad.AnnData(
                (x @ coef).astype(np.float32),
                obs=pd.DataFrame(index=list(donors)),
                var=pd.DataFrame(index=self.genes),
            )
        return md.MuData(out)


@pytest.fixture(scope="module")
def cohort():
    """Simulated cohort whose ``tissue_3`` is pure noise; ``tissue_2`` holds only 8 of the scored donors."""
    observed, _ = hyfa.data.simulate(
        n_donors=400, n_tissues=4, n_genes=12, n_latent=2, missing_rate=0.2, seed=3
    )
    rng = np.random.default_rng(0)
    noise = observed.mod["tissue_3"]
    noise.X = rng.normal(size=noise.shape).astype(np.float32)
    donors = list(observed.obs_names)
    fit, scored = donors[:250], donors[250:]
    tissue_2 = observed.mod["tissue_2"]
    keep = [d for d in tissue_2.obs_names if d in set(fit)] + [
        d for d in tissue_2.obs_names if d in set(scored)
    ][:8]
    mods = {t: (a[keep].copy() if t == "tissue_2" else a) for t, a in observed.mod.items()}
    mdata = md.MuData(mods)
    return mdata, LinearImputer(mdata, fit), scored


def test_predictability_informative_source_beats_noise(cohort):
    mdata, model, scored = cohort
    model.calls.clear()
    result = hyfa.tl.predictability(model, donors=scored, min_donors=20)
    # one imputation call per source, for all of its targets
    # (tissue_2 has too few scored donors for any pair, so it is never imputed from)
    assert [c[0] for c in model.calls] == [("tissue_0",), ("tissue_1",), ("tissue_3",)]
    matrix = result.matrix("per-gene", "mean")
    assert matrix.shape == (4, 4) and np.isnan(np.diag(matrix)).all()
    assert matrix.loc["tissue_0", "tissue_1"] > 0.3
    assert matrix.loc["tissue_0", "tissue_1"] > matrix.loc["tissue_3", "tissue_1"] + 0.2
    assert abs(matrix.loc["tissue_3", "tissue_1"]) < 0.15
    per_sample = result.matrix("per-sample", "median")
    assert per_sample.loc["tissue_0", "tissue_1"] > per_sample.loc["tissue_3", "tissue_1"]
    # tidy scores: one per gene and per scored donor
    genes = result.scores.query("source == 'tissue_0' and target == 'tissue_1' and metric == 'per-gene'")
    assert len(genes) == 12 and set(genes["name"]) == set(model.genes)
    n = result.table.set_index(["source", "target"]).loc[("tissue_0", "tissue_1"), "n_donors"]
    donors = result.scores.query("source == 'tissue_0' and target == 'tissue_1' and metric == 'per-sample'")
    assert len(donors) == n


def test_predictability_skips_pairs_with_too_few_donors(cohort):
    mdata, model, scored = cohort
    result = hyfa.tl.predictability(model, donors=scored, min_donors=20)
    # tissue_2 has 8 scored donors: every pair with it is skipped and counted
    assert len(result.skipped) == 6
    assert set(result.skipped["n_donors"]) <= set(range(9))
    assert not ((result.table["source"] == "tissue_2") | (result.table["target"] == "tissue_2")).any()
    assert np.isnan(result.matrix().loc["tissue_2"]).all()
    assert "6 skipped" in repr(result)
    with pytest.raises(ValueError, match="No \\(source, target\\) pair"):
        hyfa.tl.predictability(model, donors=scored, min_donors=10_000)


def test_predictability_errors(cohort):
    mdata, model, scored = cohort
    with pytest.raises(ValueError, match="Unknown source tissue"):
        hyfa.tl.predictability(model, donors=scored, sources=["Liver"])
    with pytest.raises(ValueError, match="Unknown target tissue"):
        hyfa.tl.predictability(model, donors=scored, targets=["tissue_0", "Liver"])
    with pytest.raises(ValueError, match="min_donors"):
        hyfa.tl.predictability(model, donors=scored, min_donors=1)
    with pytest.raises(ValueError, match="not found"):
        hyfa.tl.predictability(model, donors=["nobody"])


def test_predictability_plots(cohort):
    mdata, model, scored = cohort
    result = hyfa.tl.predictability(model, donors=scored, min_donors=20)
    ax = hyfa.pl.predictability_heatmap(result, show=False)
    # tissue_2 has no scored pair and is left out: 3 sources x 3 targets
    assert ax.images[0].get_array().shape == (3, 3)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["tissue_0", "tissue_1", "tissue_3"]
    matrix = result.matrix()
    threshold = 0.3
    expected = int((matrix.to_numpy() >= threshold).sum())
    for layout in ("auto", "kamada_kawai", "spring", "circular"):
        ax = hyfa.pl.predictability_network(result, threshold=threshold, layout=layout, show=False)
        assert len(ax.patches) == expected
    groups = {"tissue_0": "a", "tissue_1": "a", "tissue_2": "b", "tissue_3": "b"}
    ax = hyfa.pl.predictability_network(matrix, threshold=2.0, groups=groups, show=False)
    assert len(ax.patches) == 0 and len(ax.get_legend().get_texts()) == 2
    with pytest.raises(ValueError, match="layout"):
        hyfa.pl.predictability_network(result, layout="star")
    with pytest.raises(TypeError, match="predictability"):
        hyfa.pl.predictability_heatmap([1, 2])
    matplotlib.pyplot.close("all")


def _network_matrix():
    """Eight tissues: t0-t4 a chain of arrows, t5 <-> t6 a pair (one arrow above 0.45), t7 without an arrow."""
    names = [f"t{i}" for i in range(8)]
    matrix = pd.DataFrame(0.2, index=names, columns=names)
    for (s, t), r in {
        ("t0", "t1"): 0.9, ("t1", "t0"): 0.8, ("t0", "t2"): 0.7, ("t2", "t3"): 0.6, ("t3", "t4"): 0.5,
        ("t5", "t6"): 0.55, ("t6", "t5"): 0.4,
    }.items():  # fmt: skip
        matrix.loc[s, t] = r
    matrix.loc["t4", "t0"] = np.nan  # a skipped pair
    np.fill_diagonal(matrix.to_numpy(), np.nan)
    return matrix


def _labels(ax):
    return [t.get_text() for t in ax.texts]


def test_predictability_network_layout_and_labels():
    matrix = _network_matrix()
    draw = lambda **kw: hyfa.pl.predictability_network(matrix, threshold=0.45, show=False, **kw)
    ax = draw(n_labels=3)
    assert len(ax.patches) == 6
    # strength = sum of r over a tissue's arrows: t0 2.4 > t1 1.7 > t2 1.3 > t3 1.1 > t5 = t6 0.55 > t4 0.5
    assert _labels(ax) == ["t0", "t1", "t2"]
    assert _labels(draw(n_labels=6)) == ["t0", "t1", "t2", "t3", "t5", "t6"]
    assert _labels(draw(n_labels=0)) == []
    assert sorted(_labels(draw(n_labels=None))) == list(matrix.index)  # t7, without an arrow, too
    # nodes: one collection in the order of the result, sized by strength; t7 smallest, on the ring at 1.2
    xy = ax.collections[0].get_offsets()
    sizes = ax.collections[0].get_sizes()
    assert xy.shape == (8, 2) and int(np.argmax(sizes)) == 0 and int(np.argmin(sizes)) == 7
    assert sizes[1] > sizes[2] > sizes[3] > sizes[4]
    radius = np.hypot(xy[:, 0], xy[:, 1])
    assert radius[7] == pytest.approx(1.2) and radius[:7].max() == pytest.approx(1.0)
    assert ax.get_title() == "6 edges with r >= 0.45; 1 tissue without one (small nodes)"
    # linked tissues sit nearer each other than unlinked ones
    dist = lambda a, b: np.hypot(*(xy[a] - xy[b]))
    assert dist(0, 1) < dist(0, 4) and dist(5, 6) < dist(0, 6)
    # the same seed gives the same positions, another seed others
    np.testing.assert_array_equal(draw(seed=0, n_labels=3).collections[0].get_offsets(), xy)
    assert not np.allclose(draw(seed=1, n_labels=3).collections[0].get_offsets(), xy)
    # labels point at their node and are moved off one another: 16 long names around a hub, where
    # labels all put on the side facing away from the centre overlap
    names = ["hub"] + [f"source_tissue_{i}" for i in range(16)]
    star = pd.DataFrame(np.nan, index=names, columns=names)
    star.loc[names[1:], "hub"] = np.linspace(0.5, 0.8, 16)
    ax = hyfa.pl.predictability_network(star, threshold=0.45, n_labels=None, figsize=(5, 5), show=False)
    assert sorted(_labels(ax)) == sorted(names)
    offsets = dict(zip(names, ax.collections[0].get_offsets(), strict=True))
    assert all(np.allclose(t.xy, offsets[t.get_text()]) for t in ax.texts)
    renderer = ax.figure.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    # isolated=False leaves t7 out, even when every tissue is labelled
    ax = draw(isolated=False, n_labels=None)
    assert ax.collections[0].get_offsets().shape == (7, 2) and "t7" not in _labels(ax)
    assert "without" not in ax.get_title()
    ax = hyfa.pl.predictability_network(matrix, threshold=2.0, isolated=False, show=False)
    assert len(ax.collections[0].get_offsets()) == 0 and len(ax.patches) == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="n_labels"):
            draw(n_labels=bad)
    matplotlib.pyplot.close("all")


# -- a tiny trained model: embeddings, loadings, and predictability through the real imputation -------------


@pytest.fixture(scope="module")
def tiny_model():
    observed, _ = hyfa.data.simulate(n_donors=60, n_tissues=3, n_genes=10, missing_rate=0.3, seed=0)
    observed.obs["sex"] = pd.Categorical(np.where(np.arange(60) % 2, "female", "male"))
    hyfa.HYFA.setup_mudata(observed)
    model = hyfa.HYFA(observed, **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(max_epochs=2, batch_size=32, enable_progress_bar=False)
    return model, observed


def test_embeddings_as_anndata(tiny_model):
    model, mdata = tiny_model
    tissues = hyfa.tl.tissue_embeddings(model)
    assert list(tissues.obs_names) == model.tissues
    assert tissues.obsm["X_hyfa"].shape == (3, TINY["n_tissue_latent"])
    assert "organ_system" not in tissues.obs  # simulated names tell no organ system
    tissues = hyfa.tl.tissue_embeddings(model, organ_systems={"tissue_0": "Brain", "tissue_1": "Brain"})
    assert list(tissues.obs["organ_system"].astype(object).fillna("?")) == ["Brain", "Brain", "?"]
    with pytest.raises(ValueError, match="does not know"):
        hyfa.tl.tissue_embeddings(model, organ_systems={"Liver": "Liver"})

    donors = hyfa.tl.donor_embeddings(model)
    assert donors.n_obs == mdata.n_obs and donors.obsm["X_hyfa"].shape[1] == TINY["n_donor_latent"]
    np.testing.assert_allclose(donors.obsm["X_hyfa"], model.get_latent_representation(), rtol=1e-5, atol=1e-6)
    given = sum(np.asarray(mdata.obs_names.isin(a.obs_names), int) for a in mdata.mod.values())
    np.testing.assert_array_equal(donors.obs["n_tissues"], given)
    assert "sex" in donors.obs
    only = hyfa.tl.donor_embeddings(model, source_tissues=["tissue_0"], key_added="X_blood")
    assert only.n_obs == len(mdata.mod["tissue_0"]) and (only.obs["n_source_tissues"] == 1).all()
    assert "X_blood" in only.obsm
    with pytest.raises(ValueError, match="Unknown source tissue"):
        hyfa.tl.donor_embeddings(model, source_tissues=["Liver"])


def test_gtex_organ_systems():
    systems = hyfa.tl.gtex_organ_systems(["Brain_Cortex", "Whole_Blood", "Artery - Tibial", "tissue_0"])
    assert systems.iloc[:3].tolist() == ["Brain", "Blood", "Blood Vessel"]
    assert pd.isna(systems.iloc[3])


def test_predictability_with_a_trained_model(tiny_model):
    model, mdata = tiny_model
    result = hyfa.tl.predictability(model, min_donors=5)
    assert len(result.table) + len(result.skipped) == 6
    assert result.table["per-gene mean"].between(-1, 1).all()


def test_metagene_loadings_read_the_encoder(tiny_model):
    model, _ = tiny_model
    encoder = model.module.encoder
    weight = encoder.linear.weight.detach().clone()
    try:
        with torch.no_grad():
            w = torch.zeros_like(encoder.linear.weight).view(encoder.n_metagenes, encoder.n_factors, -1)
            w[1, :, [2, 5]] = 1.0  # metagene 1 reads genes 2 and 5 with every factor
            w[1, 0, 7] = -3.0  # and gene 7 with one factor, with the opposite sign
            encoder.linear.weight.copy_(w.view(-1, w.shape[-1]))
        loadings = model.get_metagene_loadings()
        assert list(loadings.index) == model.genes and loadings.shape == (10, TINY["n_metagenes"])
        expected = np.zeros(10)
        expected[[2, 5]], expected[7] = np.sqrt(TINY["n_factors"]), 3.0
        np.testing.assert_allclose(loadings["metagene_1"], expected, rtol=1e-6)
        assert (loadings["metagene_0"] == 0).all()
        svd = model.get_metagene_loadings(metagenes=[1], summary="svd")
        assert list(svd.columns) == ["metagene_1"]
        top = svd["metagene_1"].abs().idxmax()
        assert svd.loc[top, "metagene_1"] > 0
        with pytest.raises(ValueError, match="summary"):
            model.get_metagene_loadings(summary="pca")
        with pytest.raises(ValueError, match="positions"):
            model.get_metagene_loadings(metagenes=[99])
    finally:
        with torch.no_grad():
            encoder.linear.weight.copy_(weight)


# -- enrichment ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    """Loadings of 600 genes x 4 metagenes with a 25-gene program planted in metagene_2, and gene sets."""
    rng = np.random.default_rng(7)
    genes = [f"G{i}" for i in range(600)]
    loadings = pd.DataFrame(
        rng.normal(size=(600, 4)), index=genes, columns=[f"metagene_{j}" for j in range(4)]
    )
    program = list(rng.choice(genes, 25, replace=False))
    loadings.loc[program, "metagene_2"] += 1.5
    sets = {"PROGRAM": program, "RANDOM": list(rng.choice(genes, 25, replace=False))}
    sets.update({f"OTHER_{k}": list(rng.choice(genes, 30, replace=False)) for k in range(20)})
    return loadings, sets


def test_enrichment_recovers_a_planted_program(planted):
    loadings, sets = planted
    result = hyfa.tl.metagene_enrichment(loadings, sets)
    assert list(result.columns) == ["metagene", "gene_set", "size", "score", "pvalue", "fdr", "genes"]
    assert len(result) == 4 * 22
    hit = result[result["metagene"] == "metagene_2"].iloc[0]
    assert hit["gene_set"] == "PROGRAM" and hit["fdr"] < 1e-3 and hit["score"] > 0.8
    others = result[(result["metagene"] != "metagene_2") | (result["gene_set"] != "PROGRAM")]
    assert (others["fdr"] > 0.01).all()
    random = result[result["gene_set"] == "RANDOM"]
    assert (random["fdr"] > 0.05).all()
    assert set(hit["genes"].split(";")) <= set(sets["PROGRAM"])


def test_ranksum_matches_scipy(planted):
    from scipy import stats

    loadings, sets = planted
    result = hyfa.tl.metagene_enrichment(loadings, sets, min_size=5).set_index(["metagene", "gene_set"])
    x = loadings["metagene_0"]
    inside = x.index.isin(sets["OTHER_3"])
    expected = stats.mannwhitneyu(x[inside], x[~inside], alternative="greater", method="asymptotic").pvalue
    assert result.loc[("metagene_0", "OTHER_3"), "pvalue"] == pytest.approx(expected, rel=1e-6)
    pvalues = result.loc["metagene_1", "pvalue"].to_numpy()
    np.testing.assert_allclose(result.loc["metagene_1", "fdr"], stats.false_discovery_control(pvalues))


def test_enrichment_accepts_a_decoupler_table(planted):
    loadings, sets = planted
    table = pd.DataFrame([(k, g) for k, v in sets.items() for g in v], columns=["source", "target"])
    from_table = hyfa.tl.metagene_enrichment(loadings, table)
    from_dict = hyfa.tl.metagene_enrichment(loadings, sets)
    pd.testing.assert_frame_equal(from_table, from_dict)
    with pytest.raises(ValueError, match="source=/target="):
        hyfa.tl.metagene_enrichment(loadings, table.rename(columns={"source": "term"}))


def test_enrichment_errors(planted):
    loadings, sets = planted
    with pytest.raises(ValueError, match="None of the 600 genes of `loadings` is in the gene-set dict"):
        hyfa.tl.metagene_enrichment(loadings, {"X": ["TP53", "BRCA1", "MYC"]})
    ensembl = loadings.set_axis([f"ENSG{i:011d}" for i in range(600)])
    with pytest.raises(ValueError, match="Ensembl gene IDs.*gene symbols.*gene_symbols="):
        hyfa.tl.metagene_enrichment(ensembl, sets)
    symbols = pd.Series(loadings.index, index=ensembl.index)
    mapped = hyfa.tl.metagene_enrichment(ensembl, sets, gene_symbols=symbols)
    pd.testing.assert_frame_equal(mapped, hyfa.tl.metagene_enrichment(loadings, sets))
    with pytest.raises(ValueError, match="No set .* keeps 100"):
        hyfa.tl.metagene_enrichment(loadings, sets, min_size=100)
    with pytest.raises(ValueError, match="Unknown gene-set library 'KEGG'"):
        hyfa.tl.metagene_enrichment(loadings, "KEGG")
    with pytest.raises(ValueError, match="method"):
        hyfa.tl.metagene_enrichment(loadings, sets, method="ora")
    with pytest.raises(TypeError, match="collection"):
        hyfa.tl.metagene_enrichment(loadings, {"X": "G1"})


def test_bundled_library_is_read_offline_and_named_in_errors(planted):
    pytest.importorskip("blitzgsea")
    kegg = hyfa.tl.gene_set_library("KEGG_2021_Human")
    assert len(kegg) > 300 and "BRCA1" in {g for genes in kegg.values() for g in genes}
    loadings, _ = planted
    with pytest.raises(ValueError, match="None of the 600 genes .* KEGG_2021_Human"):
        hyfa.tl.metagene_enrichment(loadings, "KEGG_2021_Human")


def test_blitzgsea_recovers_a_planted_program(planted):
    pytest.importorskip("blitzgsea")
    loadings, sets = planted
    result = hyfa.tl.metagene_enrichment(loadings[["metagene_2"]], sets, method="blitzgsea", permutations=300)
    top = result.iloc[0]
    assert top["gene_set"] == "PROGRAM" and top["fdr"] < 0.01 and top["score"] > 0
    assert result.set_index("gene_set").loc["RANDOM", "fdr"] > 0.05
