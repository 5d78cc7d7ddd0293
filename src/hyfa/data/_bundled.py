"""The GTEx v8 excerpt shipped with the package: read counts of the 59 ACMG genes in every tissue sample."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from mudata import MuData

from ._gtex import read_gtex
from ._tissue import PAPER_DROPPED_TISSUES

logger = logging.getLogger(__name__)

_FILES = Path(__file__).parent / "_files"
_READS = "GTEx_Analysis_2017-06-05_v8_RNASeQCv1.1.9_gene_reads.acmg_59.gct.gz"
_ATTRIBUTES = "GTEx_v8_SampleAttributes.acmg_59.tsv.gz"
_SPLITS = ("train", "val", "test")
_UNASSIGNED = "unassigned"
_COHORTS = ("paper", "all")


def paper_donor_split() -> pd.Series:
    """Return the HYFA paper's donor split :cite:p:`Vinas2023`: ``"train"``, ``"val"`` or ``"test"`` per donor.

    The 834 donors (500 / 167 / 167) are read from the split files bundled with the package.
    """
    split = {}
    for name in _SPLITS:
        text = (_FILES / f"donors_{name}.txt").read_text(encoding="utf-8")
        donors = [d.strip() for d in text.replace("\n", ",").split(",") if d.strip()]
        clash = [d for d in donors if d in split]
        if clash:  # pragma: no cover - guards the bundled files
            raise ValueError(f"Donors in more than one split of the bundled files: {clash[:5]}.")
        split.update(dict.fromkeys(donors, name))
    return pd.Series(split, name="split", dtype=object)


def gtex_acmg59(cohort: str = "paper") -> MuData:
    """Return the bundled GTEx v8 read counts of the 59 ACMG genes as a MuData of tissues.

    The package ships GTEx v8's RNA-SeQC read counts restricted to the 59 ACMG
    secondary-findings genes, for all 17,382 samples (948 donors, 54 tissues), read with
    :func:`~hyfa.data.read_gtex`. No donor age or sex is included.

    Parameters
    ----------
    cohort
        ``"paper"``: the cohort of the HYFA paper :cite:p:`Vinas2023`, i.e. the 834 donors listed in
        its published train/validation/test split, in the 49 tissues left after dropping
        :data:`~hyfa.data.PAPER_DROPPED_TISSUES` (15,197 samples). ``"all"``: every donor and tissue
        (948 donors, 54 tissues, 17,382 samples).

    Returns
    -------
    MuData with one modality per tissue (see :func:`~hyfa.data.read_gtex`) and the categorical
    ``mdata.obs["split"]``: ``"train"``, ``"val"`` or ``"test"`` (500 / 167 / 167 donors) as in the
    paper; with ``cohort="all"`` the 114 donors outside the paper's cohort are ``"unassigned"``.

    Examples
    --------
    >>> import hyfa
    >>> mdata = hyfa.data.gtex_acmg59()
    >>> mdata.n_obs, len(mdata.mod)
    (834, 49)
    """
    if cohort not in _COHORTS:
        raise ValueError(f"Unknown cohort {cohort!r}; choose one of {', '.join(map(repr, _COHORTS))}.")
    split = paper_donor_split()
    paper = cohort == "paper"
    mdata = read_gtex(
        _FILES / _READS,
        _FILES / _ATTRIBUTES,
        drop_tissues=PAPER_DROPPED_TISSUES if paper else None,
        donors=split.index if paper else None,
    )
    categories = list(_SPLITS) if paper else [*_SPLITS, _UNASSIGNED]
    labels = split.reindex(mdata.obs_names).fillna(_UNASSIGNED).to_numpy()
    mdata.obs["split"] = pd.Categorical(labels, categories=categories)
    return mdata
