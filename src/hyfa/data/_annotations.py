"""Readers for GTEx's sample attributes (``SampleAttributesDS``) and subject phenotypes (``SubjectPhenotypesDS``)."""

from __future__ import annotations

import re
from os import PathLike

import numpy as np
import pandas as pd

from hyfa._checks import duplicates, preview

from ._io import open_text

_AGE_BRACKET = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
#: GTEx codes ``SEX`` as 1 = male, 2 = female.
_SEX_CODES = {1: "male", 2: "female"}


def _read_tsv(path: str | PathLike, index: str, required: list[str], what: str) -> pd.DataFrame:
    """Return a tab-separated table indexed by its ``index`` column, checking required columns and unique ids."""
    with open_text(path) as fh:
        table = pd.read_csv(fh, sep="\t", dtype={index: str}, low_memory=False)
    missing = [c for c in [index, *required] if c not in table.columns]
    if missing:
        raise ValueError(
            f"{path}: {what} lacks column(s) {preview(missing)}; found {preview(list(table.columns), 10)}."
        )
    ids = pd.Index(table[index])
    if ids.isna().any():
        raise ValueError(
            f"{path}: {what} has rows without {index} (table rows {preview(np.flatnonzero(ids.isna()))})."
        )
    if ids.has_duplicates:
        raise ValueError(f"{path}: {what} lists some {index} more than once: {preview(duplicates(ids))}.")
    return table.set_index(index)


def read_sample_attributes(path: str | PathLike) -> pd.DataFrame:
    """Return GTEx sample attributes indexed by sample id (``SAMPID``), with at least the ``SMTSD`` column.

    Parameters
    ----------
    path
        Tab-separated file in the format of the GTEx portal's ``SampleAttributesDS.txt``, plain or gzip.
    """
    return _read_tsv(path, "SAMPID", ["SMTSD"], "sample attributes")


def read_subject_phenotypes(path: str | PathLike) -> pd.DataFrame:
    """Return GTEx donor phenotypes indexed by donor id, with parsed age and sex columns added.

    ``AGE`` (a bracket such as ``"60-69"``) is kept as a categorical and its midpoint is added as the
    float column ``age`` (``64.5``); ``SEX`` is kept as given (1 = male, 2 = female) and added as the
    categorical ``sex`` (``"male"``/``"female"``). Other columns (e.g. ``DTHHRDY``) are kept unchanged.

    Parameters
    ----------
    path
        Tab-separated file in the format of the GTEx portal's ``SubjectPhenotypesDS.txt``
        (columns ``SUBJID``, ``SEX``, ``AGE``, ``DTHHRDY``), plain or gzip.
    """
    table = _read_tsv(path, "SUBJID", ["SEX", "AGE"], "subject phenotypes")
    table.index.name = None
    age = table["AGE"].astype("string")
    midpoints = np.full(len(table), np.nan)
    for k, (donor, bracket) in enumerate(age.items()):
        if pd.isna(bracket):
            continue
        match = _AGE_BRACKET.match(bracket)
        if match is None:
            raise ValueError(
                f"{path}: donor {donor!r} has AGE {bracket!r}; expected a bracket such as '60-69'."
            )
        low, high = int(match.group(1)), int(match.group(2))
        if low > high:
            raise ValueError(f"{path}: donor {donor!r} has AGE {bracket!r} with its bounds reversed.")
        midpoints[k] = (low + high) / 2
    sex = pd.to_numeric(table["SEX"], errors="coerce")
    bad_sex = table["SEX"].notna() & ~sex.isin(list(_SEX_CODES))
    if bad_sex.any():
        raise ValueError(
            f"{path}: SEX must be 1 (male) or 2 (female); donors {preview(table.index[bad_sex])} have "
            f"{preview(table['SEX'][bad_sex])}."
        )
    table["AGE"] = pd.Categorical(age.astype(object).where(age.notna(), None))
    table["age"] = midpoints
    table["sex"] = pd.Categorical(sex.map(_SEX_CODES), categories=["female", "male"])
    return table
