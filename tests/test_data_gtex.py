"""Tests of the GTEx readers: bundled GTEx v8 excerpt, synthetic GCT files and bad input."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyfa.data import PAPER_DROPPED_TISSUES, gtex_acmg59, read_gtex, tissue_id
from hyfa.data._bundled import _FILES as FILES

GCT = FILES / "GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.acmg_59.gct.gz"
ATTRIBUTES = FILES / "GTEx_v8_SampleAttributes.acmg_59.tsv.gz"


# --------------------------------------------------------------------------------------------
# bundled data
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paper():
    return gtex_acmg59("paper")


@pytest.fixture(scope="module")
def everything():
    return gtex_acmg59("all")


@pytest.fixture(scope="module")
def gct_table():
    """The bundled GCT read independently, in one go, with pandas: genes (Name) x samples."""
    return pd.read_csv(GCT, sep="\t", skiprows=2, index_col=0)


def _n_samples(mdata):
    return sum(adata.n_obs for adata in mdata.mod.values())


def test_paper_cohort_sizes(paper):
    assert paper.n_obs == 834
    assert len(paper.mod) == 49
    assert _n_samples(paper) == 15_197
    assert paper.obs["split"].value_counts().to_dict() == {"train": 500, "val": 167, "test": 167}
    assert list(paper.obs["split"].cat.categories) == ["train", "val", "test"]
    assert not set(PAPER_DROPPED_TISSUES) & set(paper.mod)
    assert list(paper.obs.columns) == ["split"]


def test_paper_split_matches_files(paper):
    for split in ("train", "val", "test"):
        listed = (FILES / f"donors_{split}.txt").read_text().strip().split(",")
        assert sorted(paper.obs_names[paper.obs["split"] == split]) == sorted(listed)


def test_all_cohort_sizes(everything):
    assert everything.n_obs == 948
    assert len(everything.mod) == 54
    assert _n_samples(everything) == 17_382
    counts = everything.obs["split"].value_counts().to_dict()
    assert counts == {"train": 500, "val": 167, "test": 167, "unassigned": 114}
    assert set(PAPER_DROPPED_TISSUES) <= set(everything.mod)


def test_unknown_cohort():
    with pytest.raises(ValueError, match="Unknown cohort 'everyone'"):
        gtex_acmg59("everyone")


def test_layout(everything):
    assert list(everything.obs_names) == sorted(everything.obs_names)
    assert list(everything.mod) == sorted(everything.mod)
    assert (
        everything.uns["tissue_names"]["Cells_EBV_transformed_lymphocytes"]
        == "Cells - EBV-transformed lymphocytes"
    )
    for tissue, adata in everything.mod.items():
        assert isinstance(adata.X, np.ndarray)
        assert adata.X.dtype == np.int32
        assert adata.shape[1] == 59
        assert list(adata.obs_names) == sorted(adata.obs_names)
        assert not adata.obs_names.has_duplicates
        donors = ["-".join(s.split("-")[:2]) for s in adata.obs["sample_id"]]
        assert list(adata.obs_names) == donors, tissue
        assert adata.var["gene_ids"].str.startswith("ENSG").all()
    lung = everything["Lung"]
    assert lung.var.loc["BRCA1", "gene_ids"].startswith("ENSG00000012048")


@pytest.mark.parametrize(
    ("cohort", "donor", "tissue", "gene", "expected"),
    [
        ("all", "GTEX-1117F", "Adipose_Subcutaneous", "BRCA1", 91),
        ("all", "GTEX-1117F", "Adipose_Subcutaneous", "SDHB", 1993),
        ("all", "GTEX-1117F", "Muscle_Skeletal", "SDHB", 4989),
        ("paper", "GTEX-RTLS", "Lung", "TP53", 780),
        ("paper", "GTEX-RTLS", "Lung", "MYH7", 842),
        ("paper", "GTEX-1RAZA", "Whole_Blood", "MYH7", 216),
    ],
)
def test_spot_values(request, cohort, donor, tissue, gene, expected):
    mdata = request.getfixturevalue("paper" if cohort == "paper" else "everything")
    adata = mdata[tissue]
    assert adata[donor, gene].X.item() == expected


def test_random_samples_equal_gct(everything, gct_table):
    rng = np.random.default_rng(0)
    symbols = gct_table["Description"]
    for tissue in rng.choice(list(everything.mod), size=6, replace=False):
        adata = everything[tissue]
        for row in rng.choice(adata.n_obs, size=3, replace=False):
            sample = adata.obs["sample_id"].iloc[row]
            expected = gct_table[sample].to_numpy()
            np.testing.assert_array_equal(adata.X[row], expected)
            assert list(adata.var["gene_ids"]) == list(gct_table.index)
            assert list(adata.var_names) == list(symbols)


def test_every_sample_equals_gct(paper, gct_table):
    for tissue, adata in paper.mod.items():
        np.testing.assert_array_equal(adata.X, gct_table[adata.obs["sample_id"]].to_numpy().T, err_msg=tissue)


# --------------------------------------------------------------------------------------------
# tissue identifiers
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("smtsd", "expected"),
    [
        ("Heart - Atrial Appendage", "Heart_Atrial_Appendage"),
        ("Cells - EBV-transformed lymphocytes", "Cells_EBV_transformed_lymphocytes"),
        ("Whole Blood", "Whole_Blood"),
        ("Brain - Spinal cord (cervical c-1)", "Brain_Spinal_cord_cervical_c_1"),
        ("Skin - Sun Exposed (Lower leg)", "Skin_Sun_Exposed_Lower_leg"),
        ("Heart_Atrial_Appendage", "Heart_Atrial_Appendage"),
    ],
)
def test_tissue_id(smtsd, expected):
    assert tissue_id(smtsd) == expected
    assert tissue_id(expected) == expected


def test_tissue_id_bad():
    with pytest.raises(ValueError, match="no letters or digits"):
        tissue_id(" - ")
    with pytest.raises(TypeError):
        tissue_id(3)


# --------------------------------------------------------------------------------------------
# synthetic GTEx files
# --------------------------------------------------------------------------------------------
def write_gct(
    path: Path, counts: pd.DataFrame, symbols=None, dims=None, version="#1.2", compress=True
) -> Path:
    """Write ``counts`` (genes x samples) as GCT 1.2; ``counts`` cells may be strings for bad input."""
    symbols = list(counts.index) if symbols is None else symbols
    dims = dims or f"{counts.shape[0]}\t{counts.shape[1]}"
    lines = [version, dims, "\t".join(["Name", "Description", *counts.columns])]
    for (gene_id, row), symbol in zip(counts.iterrows(), symbols, strict=True):
        lines.append("\t".join([str(gene_id), str(symbol), *map(str, row.tolist())]))
    text = "\n".join(lines) + "\n"
    if compress:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def write_attributes(path: Path, samples: dict[str, str]) -> Path:
    pd.DataFrame({"SAMPID": list(samples), "SMTS": "x", "SMTSD": list(samples.values())}).to_csv(
        path, sep="\t", index=False
    )
    return path


LAYOUT = {
    # sample id -> SMTSD
    "GTEX-AAAA-0001-SM-1": "Whole Blood",
    "GTEX-AAAA-0002-SM-2": "Heart - Atrial Appendage",
    "GTEX-AAAA-0003-SM-3": "Lung",
    "GTEX-BBBB-0001-SM-4": "Whole Blood",
    "GTEX-BBBB-0002-SM-5": "Lung",
    "GTEX-CCCC-0001-SM-6": "Lung",
    "GTEX-DDDD-0001-SM-7": "Heart - Atrial Appendage",
    "GTEX-DDDD-0002-SM-8": "Whole Blood",
}


@pytest.fixture
def small(tmp_path):
    rng = np.random.default_rng(1)
    genes = [f"ENSG{i:011d}.1" for i in range(6)]
    counts = pd.DataFrame(rng.integers(0, 1000, size=(6, len(LAYOUT))), index=genes, columns=list(LAYOUT))
    symbols = ["A", "B", "A", "C", "D", "A"]
    gct = write_gct(tmp_path / "reads.gct.gz", counts, symbols=symbols, dims="56200\t17382")
    attributes = write_attributes(tmp_path / "attributes.tsv", LAYOUT)
    return gct, attributes, counts


def test_small_read(small):
    gct, attributes, counts = small
    mdata = read_gtex(gct, attributes)
    assert list(mdata.mod) == ["Heart_Atrial_Appendage", "Lung", "Whole_Blood"]
    assert list(mdata.obs_names) == ["GTEX-AAAA", "GTEX-BBBB", "GTEX-CCCC", "GTEX-DDDD"]
    assert list(mdata["Lung"].obs_names) == ["GTEX-AAAA", "GTEX-BBBB", "GTEX-CCCC"]
    assert list(mdata["Lung"].var_names) == ["A", "B", "A-1", "C", "D", "A-2"]
    assert list(mdata["Lung"].var["gene_ids"]) == list(counts.index)
    assert list(mdata["Lung"].obs["sample_id"]) == [
        "GTEX-AAAA-0003-SM-3",
        "GTEX-BBBB-0002-SM-5",
        "GTEX-CCCC-0001-SM-6",
    ]
    np.testing.assert_array_equal(
        mdata["Whole_Blood"]["GTEX-DDDD"].X[0], counts["GTEX-DDDD-0002-SM-8"].to_numpy()
    )
    assert mdata.obs.shape[1] == 0


def test_small_filters(small, caplog):
    gct, attributes, _ = small
    with caplog.at_level(logging.INFO, logger="hyfa.data"):
        mdata = read_gtex(gct, attributes, tissues=["Lung", "Whole Blood"], min_tissues_per_donor=2)
    assert list(mdata.mod) == ["Lung", "Whole_Blood"]
    assert list(mdata.obs_names) == ["GTEX-AAAA", "GTEX-BBBB"]
    assert "Dropping 1 of 3 tissues (2 samples): Heart_Atrial_Appendage" in caplog.text
    assert "Dropping 2 donors (2 samples) with fewer than 2 tissues" in caplog.text

    mdata = read_gtex(
        gct, attributes, drop_tissues=["Heart_Atrial_Appendage"], donors=["GTEX-CCCC", "GTEX-DDDD"]
    )
    assert list(mdata.obs_names) == ["GTEX-CCCC", "GTEX-DDDD"]
    assert list(mdata.mod) == ["Lung", "Whole_Blood"]


def test_subject_phenotypes(small, tmp_path):
    gct, attributes, _ = small
    phenotypes = tmp_path / "phenotypes.txt"
    pd.DataFrame(
        {
            "SUBJID": ["GTEX-AAAA", "GTEX-BBBB", "GTEX-CCCC", "GTEX-DDDD", "GTEX-EEEE"],
            "SEX": [1, 2, 2, 1, 1],
            "AGE": ["60-69", "20-29", "50-59", "70-79", "30-39"],
            "DTHHRDY": [2.0, np.nan, 0.0, 4.0, 1.0],
        }
    ).to_csv(phenotypes, sep="\t", index=False)
    mdata = read_gtex(gct, attributes, subject_phenotypes=phenotypes)
    obs = mdata.obs
    assert list(obs.index) == ["GTEX-AAAA", "GTEX-BBBB", "GTEX-CCCC", "GTEX-DDDD"]
    assert obs["age"].tolist() == [64.5, 24.5, 54.5, 74.5]
    assert isinstance(obs["AGE"].dtype, pd.CategoricalDtype)
    assert obs["AGE"].astype(str).tolist() == ["60-69", "20-29", "50-59", "70-79"]
    assert obs["SEX"].tolist() == [1, 2, 2, 1]
    assert obs["sex"].astype(str).tolist() == ["male", "female", "female", "male"]
    assert np.isnan(obs.loc["GTEX-BBBB", "DTHHRDY"])
    assert not any(":" in c for c in obs.columns)


@pytest.mark.parametrize("compress", [True, False])
def test_chunked_read_equals_plain_read(tmp_path, compress):
    rng = np.random.default_rng(7)
    n_genes, n_donors = 300, 400
    tissues = ["Lung", "Whole Blood", "Thyroid", "Liver", "Testis"]
    samples = {
        f"GTEX-{d:04X}-{t:04d}-SM-{d}{t}": tissues[t] for d in range(n_donors) for t in range(len(tissues))
    }
    assert len(samples) == 2000
    genes = [f"ENSG{i:011d}.3" for i in range(n_genes)]
    values = rng.negative_binomial(2, 0.01, size=(n_genes, len(samples)))
    counts = pd.DataFrame(values, index=genes, columns=list(samples))
    gct = write_gct(tmp_path / ("big.gct.gz" if compress else "big.gct"), counts, compress=compress)
    attributes = write_attributes(tmp_path / "attributes.tsv", samples)

    mdata = read_gtex(gct, attributes, chunk_size=37)
    plain = pd.read_csv(gct, sep="\t", skiprows=2, index_col=0)
    assert sum(a.n_obs for a in mdata.mod.values()) == 2000
    for tissue, adata in mdata.mod.items():
        expected = plain[adata.obs["sample_id"]].to_numpy().T
        np.testing.assert_array_equal(adata.X, expected, err_msg=tissue)
        assert list(adata.var["gene_ids"]) == list(plain.index)
    # chunk size does not matter
    whole = read_gtex(gct, attributes, chunk_size=10_000)
    for tissue in mdata.mod:
        np.testing.assert_array_equal(mdata[tissue].X, whole[tissue].X)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
def _counts(n_genes=3):
    return pd.DataFrame(
        np.arange(n_genes * len(LAYOUT)).reshape(n_genes, -1),
        index=[f"ENSG{i}" for i in range(n_genes)],
        columns=list(LAYOUT),
    ).astype(object)


@pytest.fixture
def attributes(tmp_path):
    return write_attributes(tmp_path / "attributes.tsv", LAYOUT)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"version": "#1.3"}, r"not a GCT 1.2 file: the first line is '#1.3'"),
        ({"version": "Name\tDescription"}, "not a GCT 1.2 file"),
        ({"dims": "56200"}, "malformed GCT dimension line"),
        ({"dims": "a\tb"}, "malformed GCT dimension line"),
    ],
)
def test_bad_gct_preamble(tmp_path, attributes, kwargs, match):
    gct = write_gct(tmp_path / "bad.gct.gz", _counts(), **kwargs)
    with pytest.raises(ValueError, match=match):
        read_gtex(gct, attributes)


def test_bad_gct_header(tmp_path, attributes):
    gct = tmp_path / "bad.gct"
    gct.write_text("#1.2\n1\t1\nGene\tSymbol\tGTEX-AAAA-0001-SM-1\nENSG1\tA\t1\n")
    with pytest.raises(ValueError, match="malformed GCT header"):
        read_gtex(gct, attributes)


def test_ragged_rows(tmp_path, attributes):
    gct = write_gct(tmp_path / "ok.gct", _counts(), compress=False)
    lines = gct.read_text().splitlines()
    too_long = lines.copy()
    too_long[4] += "\t5"
    (tmp_path / "long.gct").write_text("\n".join(too_long) + "\n")
    with pytest.raises(
        ValueError, match=r"line 5: ragged row with 11 tab-separated fields; the header has 10"
    ):
        read_gtex(tmp_path / "long.gct", attributes)
    too_short = lines.copy()
    too_short[5] = too_short[5].rsplit("\t", 1)[0]
    (tmp_path / "short.gct").write_text("\n".join(too_short) + "\n")
    with pytest.raises(ValueError, match=r"line 6: ragged row with 9 tab-separated fields"):
        read_gtex(tmp_path / "short.gct", attributes)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("abc", r"line 5: non-numeric count 'abc' for gene 'ENSG1' in sample 'GTEX-BBBB-0001-SM-4'"),
        ("", r"line 5: non-numeric count '' for gene 'ENSG1'"),
        ("NA", r"non-numeric count 'NA' for gene 'ENSG1'"),
        ("nan", r"non-numeric count 'nan' for gene 'ENSG1' in sample 'GTEX-BBBB-0001-SM-4'"),
        ("inf", r"non-finite count inf for gene 'ENSG1'"),
        ("-3", r"negative count -3 for gene 'ENSG1' in sample 'GTEX-BBBB-0001-SM-4'"),
        ("2.5", r"non-integer count 2.5 for gene 'ENSG1' in sample 'GTEX-BBBB-0001-SM-4'"),
        ("99999999999", r"too large \(beyond int32\) count 99999999999"),
    ],
)
def test_bad_counts(tmp_path, attributes, value, match):
    counts = _counts()
    counts.loc["ENSG1", "GTEX-BBBB-0001-SM-4"] = value
    gct = write_gct(tmp_path / "bad.gct.gz", counts)
    with pytest.raises(ValueError, match=match):
        read_gtex(gct, attributes, chunk_size=2)


def test_float_counts_that_are_integers(tmp_path, attributes):
    counts = _counts()
    counts.loc["ENSG2", "GTEX-AAAA-0001-SM-1"] = "7.0"
    mdata = read_gtex(write_gct(tmp_path / "float.gct.gz", counts), attributes)
    assert mdata["Whole_Blood"]["GTEX-AAAA", "ENSG2"].X.item() == 7


def test_samples_missing_from_attributes(tmp_path):
    gct = write_gct(tmp_path / "reads.gct.gz", _counts())
    partial = {k: v for k, v in LAYOUT.items() if k not in ("GTEX-BBBB-0002-SM-5", "GTEX-DDDD-0001-SM-7")}
    attributes = write_attributes(tmp_path / "attributes.tsv", partial)
    with pytest.raises(
        ValueError,
        match=r"2 samples of .* are missing from the sample attributes .*'GTEX-BBBB-0002-SM-5', 'GTEX-DDDD-0001-SM-7'",
    ):
        read_gtex(gct, attributes)


def test_duplicated_donor_tissue(tmp_path):
    layout = dict(LAYOUT)
    layout["GTEX-CCCC-0009-SM-9"] = "Lung"
    counts = pd.DataFrame(
        np.ones((2, len(layout)), dtype=int), index=["ENSG1", "ENSG2"], columns=list(layout)
    )
    gct = write_gct(tmp_path / "reads.gct.gz", counts)
    attributes = write_attributes(tmp_path / "attributes.tsv", layout)
    with pytest.raises(
        ValueError,
        match=r"1 donor/tissue pairs have more than one sample, e.g. GTEX-CCCC/Lung \(GTEX-CCCC-0001-SM-6, GTEX-CCCC-0009-SM-9\)",
    ):
        read_gtex(gct, attributes)
    # dropping the tissue resolves it
    assert "Lung" not in read_gtex(gct, attributes, drop_tissues=["Lung"]).mod


def test_bad_arguments(small, tmp_path):
    gct, attributes, _ = small
    with pytest.raises(ValueError, match=r"Unknown tissue\(s\) in `tissues`: 'Brain'"):
        read_gtex(gct, attributes, tissues=["Lung", "Brain"])
    with pytest.raises(ValueError, match=r"Unknown tissue\(s\) in `drop_tissues`: 'Kidney - Medulla'"):
        read_gtex(gct, attributes, drop_tissues=["Kidney - Medulla"])
    with pytest.raises(ValueError, match="min_tissues_per_donor must be a positive integer"):
        read_gtex(gct, attributes, min_tissues_per_donor=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        read_gtex(gct, attributes, chunk_size=0)
    with pytest.raises(
        ValueError, match=r"1 donors in `donors` have no sample in the kept tissues: 'GTEX-ZZZZ'"
    ):
        read_gtex(gct, attributes, donors=["GTEX-AAAA", "GTEX-ZZZZ"])
    with pytest.raises(ValueError, match="No samples left"):
        read_gtex(gct, attributes, min_tissues_per_donor=4)
    with pytest.raises(FileNotFoundError, match="nowhere.gct"):
        read_gtex(tmp_path / "nowhere.gct", attributes)


def test_bad_attributes(small, tmp_path):
    gct, _, _ = small
    no_tissue = tmp_path / "no_tissue.tsv"
    pd.DataFrame({"SAMPID": list(LAYOUT)}).to_csv(no_tissue, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"sample attributes lacks column\(s\) 'SMTSD'"):
        read_gtex(gct, no_tissue)
    twice = tmp_path / "twice.tsv"
    frame = pd.DataFrame({"SAMPID": list(LAYOUT), "SMTSD": list(LAYOUT.values())})
    pd.concat([frame, frame.iloc[[2]]]).to_csv(twice, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"lists some SAMPID more than once: 'GTEX-AAAA-0003-SM-3'"):
        read_gtex(gct, twice)


def test_bad_phenotypes(small, tmp_path):
    gct, attributes, _ = small
    path = tmp_path / "phenotypes.txt"
    frame = pd.DataFrame(
        {
            "SUBJID": ["GTEX-AAAA", "GTEX-BBBB", "GTEX-CCCC", "GTEX-DDDD"],
            "SEX": [1, 2, 2, 1],
            "AGE": ["60-69"] * 4,
        }
    )
    frame.iloc[:3].to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"1 donors are missing from .*phenotypes.txt: 'GTEX-DDDD'"):
        read_gtex(gct, attributes, subject_phenotypes=path)
    frame.assign(AGE=["60-69", "old", "20-29", "30-39"]).to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"donor 'GTEX-BBBB' has AGE 'old'"):
        read_gtex(gct, attributes, subject_phenotypes=path)
    frame.assign(SEX=[1, 2, 3, 1]).to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"SEX must be 1 \(male\) or 2 \(female\); donors 'GTEX-CCCC'"):
        read_gtex(gct, attributes, subject_phenotypes=path)


# --------------------------------------------------------------------------------------------
# gene subsets (genes=) and low-level read errors (#11, #15)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def medium(tmp_path):
    """A gzipped GCT of 120 genes (some symbols repeated) x the 8 samples of LAYOUT."""
    rng = np.random.default_rng(3)
    genes = [f"ENSG{i:011d}.2" for i in range(120)]
    symbols = [f"S{i % 100}" for i in range(120)]  # S0..S19 twice: S0, ..., S0-1, ...
    counts = pd.DataFrame(rng.integers(0, 5000, size=(120, len(LAYOUT))), index=genes, columns=list(LAYOUT))
    gct = write_gct(tmp_path / "medium.gct.gz", counts, symbols=symbols)
    return gct, write_attributes(tmp_path / "attributes.tsv", LAYOUT), counts


def test_genes_subset_equals_full_read(medium):
    gct, attributes, counts = medium
    full = read_gtex(gct, attributes)
    assert full["Lung"].var_names[100] == "S0-1"
    rng = np.random.default_rng(0)
    rows = rng.choice(np.r_[1:100, 101:120], size=37, replace=False)  # random order
    lung = full["Lung"]
    genes = [lung.var["gene_ids"].iloc[r] if k % 2 else lung.var_names[r] for k, r in enumerate(rows)]
    genes += ["S0-1", "S0"]  # made-unique symbols
    subset = read_gtex(gct, attributes, genes=genes, chunk_size=4)
    names = [full["Lung"].var_names[r] for r in rows] + ["S0-1", "S0"]
    expected = {t: a[:, names] for t, a in full.mod.items()}
    for tissue, adata in expected.items():
        np.testing.assert_array_equal(subset[tissue].X, adata.X, err_msg=tissue)
        assert list(subset[tissue].var_names) == names
        assert list(subset[tissue].var["gene_ids"]) == list(adata.var["gene_ids"])
    # and against the file itself
    lung = subset["Lung"]
    sample = lung.obs["sample_id"].iloc[1]
    np.testing.assert_array_equal(lung.X[1], counts.loc[lung.var["gene_ids"], sample].to_numpy())


def test_genes_subset_of_bundled_data_equals_paper_cohort(paper):
    sdhb = paper["Lung"].var.loc["SDHB", "gene_ids"]  # by Ensembl id
    subset = read_gtex(
        GCT,
        ATTRIBUTES,
        drop_tissues=PAPER_DROPPED_TISSUES,
        donors=paper.obs_names,
        genes=["TP53", "BRCA1", sdhb, "MYH7"],
    )
    assert list(subset.mod) == list(paper.mod)
    assert subset.obs_names.equals(paper.obs_names)
    for tissue, adata in paper.mod.items():
        expected = adata[:, ["TP53", "BRCA1", "SDHB", "MYH7"]]
        np.testing.assert_array_equal(subset[tissue].X, expected.X, err_msg=tissue)
        assert list(subset[tissue].var_names) == list(expected.var_names)
        assert list(subset[tissue].var["gene_ids"]) == list(expected.var["gene_ids"])
        pd.testing.assert_frame_equal(subset[tissue].obs, expected.obs.copy())
    assert subset["Lung"]["GTEX-RTLS", "TP53"].X.item() == 780


def test_unknown_genes_named_before_counts_are_parsed(medium, monkeypatch):
    gct, attributes, _ = medium

    def no_parsing(*args, **kwargs):
        raise AssertionError("counts were parsed")

    monkeypatch.setattr("hyfa.data._gtex.iter_gct_counts", no_parsing)
    with pytest.raises(
        ValueError,
        match=r"2 of 4 genes in `genes` are not in .*medium.gct.gz.*: 'NOPE', 'ENSG99999999999.1'",
    ):
        read_gtex(gct, attributes, genes=["S1", "NOPE", "ENSG00000000003.2", "ENSG99999999999.1"])


@pytest.mark.parametrize(
    ("genes", "match"),
    [
        ([], r"`genes` is empty"),
        (["S1", "S2", "S1"], r"Genes listed twice in `genes`: 'S1'"),
        (["S1", "ENSG00000000001.2"], r"once by id and once by symbol: 'ENSG00000000001.2'"),
    ],
)
def test_bad_genes(medium, genes, match):
    gct, attributes, _ = medium
    with pytest.raises(ValueError, match=match):
        read_gtex(gct, attributes, genes=genes)


def test_unselected_rows_are_not_parsed(tmp_path, attributes):
    counts = _counts(n_genes=4)
    counts.loc["ENSG2", "GTEX-BBBB-0001-SM-4"] = "abc"
    gct = write_gct(tmp_path / "bad.gct.gz", counts)
    mdata = read_gtex(gct, attributes, genes=["ENSG3", "ENSG0"])
    assert list(mdata["Lung"].var_names) == ["ENSG3", "ENSG0"]
    np.testing.assert_array_equal(
        mdata["Lung"]["GTEX-BBBB"].X[0], counts.loc[["ENSG3", "ENSG0"], "GTEX-BBBB-0002-SM-5"].astype(int)
    )
    with pytest.raises(ValueError, match=r"bad.gct.gz, line 6: non-numeric count 'abc' for gene 'ENSG2'"):
        read_gtex(gct, attributes, genes=["ENSG2"])


def test_truncated_gzip_names_the_file(tmp_path, attributes):
    rng = np.random.default_rng(0)
    counts = pd.DataFrame(
        rng.integers(0, 10**6, size=(3000, len(LAYOUT))),
        index=[f"ENSG{i}" for i in range(3000)],
        columns=list(LAYOUT),
    )
    data = write_gct(tmp_path / "whole.gct.gz", counts).read_bytes()
    truncated = tmp_path / "truncated.gct.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ValueError, match=r"truncated.gct.gz: cannot read the file \(after line \d+\); it is truncated"
    ):
        read_gtex(truncated, attributes)
    with pytest.raises(ValueError, match=r"truncated.gct.gz: cannot read the file"):
        read_gtex(truncated, attributes, genes=["ENSG1"])
    corrupt = tmp_path / "corrupt.gct.gz"
    corrupt.write_bytes(data[:200] + bytes(255 - b for b in data[200:400]) + data[400:])
    with pytest.raises(ValueError, match=r"corrupt.gct.gz: cannot read the file"):
        read_gtex(corrupt, attributes)


def test_bad_count_names_the_file(tmp_path, attributes):
    counts = _counts()
    counts.loc["ENSG2", "GTEX-CCCC-0001-SM-6"] = "1e"
    gct = write_gct(tmp_path / "named.gct.gz", counts)
    with pytest.raises(ValueError) as err:
        read_gtex(gct, attributes)
    assert str(gct) in str(err.value)
    assert "line 6: non-numeric count '1e' for gene 'ENSG2' in sample 'GTEX-CCCC-0001-SM-6'" in str(err.value)


def test_undecodable_gene_name_names_the_file(tmp_path, attributes):
    gct = write_gct(tmp_path / "latin.gct", _counts(), compress=False)
    gct.write_bytes(gct.read_bytes().replace(b"ENSG1\t", b"ENSG\xe91\t"))
    with pytest.raises(ValueError, match=r"latin.gct: cannot read the file \(line 5\).*UnicodeDecodeError"):
        read_gtex(gct, attributes)


def test_truncated_attributes_name_the_file(small, tmp_path):
    gct, attributes, _ = small
    frame = pd.read_csv(attributes, sep="\t")
    frame = pd.concat([frame] * 400, ignore_index=True).assign(
        SAMPID=lambda f: [f"S{i}" for i in range(len(f))]
    )
    with gzip.open(tmp_path / "whole.tsv.gz", "wt") as fh:
        frame.to_csv(fh, sep="\t", index=False)
    data = (tmp_path / "whole.tsv.gz").read_bytes()
    truncated = tmp_path / "attributes_truncated.tsv.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ValueError, match=r"attributes_truncated.tsv.gz: cannot read the file; it is truncated"
    ):
        read_gtex(gct, truncated)
