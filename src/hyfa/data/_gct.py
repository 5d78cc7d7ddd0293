"""Streaming reader for GCT 1.2 count tables (GTEx portal ``gene_reads`` files), in row chunks.

The dimension line of a GCT file is not trusted: the bundled 59-gene excerpt keeps the
``56200 17382`` of the full table. Rows are counted as they are read instead.
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from ._io import open_text
from ._validate import _duplicates, _preview

logger = logging.getLogger(__name__)

_INT32_MAX = np.iinfo(np.int32).max
_N_HEADER_LINES = 3


@dataclass(frozen=True)
class GCTHeader:
    """The three header lines of a GCT 1.2 file.

    Attributes
    ----------
    declared_shape
        ``(n_genes, n_samples)`` as declared on the dimension line; informative only.
    samples
        Sample ids, the column names after ``Name`` and ``Description``.
    """

    declared_shape: tuple[int, int]
    samples: pd.Index


def read_gct_header(path: str | PathLike) -> GCTHeader:
    """Return the parsed header of a GCT 1.2 file, raising :class:`ValueError` if it is malformed.

    Parameters
    ----------
    path
        GCT file, plain or gzip-compressed.
    """
    with open_text(path) as fh:
        lines = [fh.readline() for _ in range(_N_HEADER_LINES)]
    version, dims, header = (line.rstrip("\r\n") for line in lines)
    if version.strip() != "#1.2":
        raise ValueError(f"{path}: not a GCT 1.2 file: the first line is {version[:40]!r}, expected '#1.2'.")
    dim_fields = dims.split("\t")
    if len(dim_fields) != 2 or not all(f.strip().isdigit() for f in dim_fields):
        raise ValueError(
            f"{path}: malformed GCT dimension line (line 2) {dims[:40]!r}; expected two tab-separated integers."
        )
    fields = header.split("\t")
    if fields[:2] != ["Name", "Description"] or len(fields) < 3:
        raise ValueError(
            f"{path}: malformed GCT header (line 3) starting {header[:60]!r}; expected 'Name', 'Description' "
            "and at least one sample id, tab-separated."
        )
    samples = pd.Index(fields[2:])
    if samples.has_duplicates:
        raise ValueError(f"{path}: duplicated sample ids in the header: {_preview(_duplicates(samples))}.")
    if (samples == "").any():
        raise ValueError(
            f"{path}: empty sample id in the header (line 3), at column {int(np.argmax(samples == '')) + 3}."
        )
    declared = (int(dim_fields[0]), int(dim_fields[1]))
    return GCTHeader(declared_shape=declared, samples=samples)


def iter_gct_counts(
    path: str | PathLike,
    samples: Sequence[str] | None = None,
    chunk_size: int = 500,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield a GCT file's counts in chunks of rows (genes), checked and cast to ``int32``.

    Only the requested sample columns are kept, so memory is bounded by ``chunk_size`` times the
    number of samples, whatever the file size. Raises :class:`ValueError` naming the line, gene and
    sample for ragged rows and for non-numeric, non-finite, negative, non-integer or too large counts.

    Parameters
    ----------
    path
        GCT 1.2 file, plain or gzip-compressed.
    samples
        Sample ids to keep, in the order of the yielded columns; ``None`` keeps all, in file order.
    chunk_size
        Number of rows parsed at a time.

    Yields
    ------
    Gene ids (``Name``), gene symbols (``Description``) and a genes x samples ``int32`` count matrix.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    header = read_gct_header(path)
    samples = header.samples if samples is None else pd.Index(samples)
    if samples.has_duplicates:
        raise ValueError(f"Samples requested twice: {_preview(_duplicates(samples))}.")
    positions = header.samples.get_indexer(samples)
    if (positions < 0).any():
        raise ValueError(f"{path}: samples not in the GCT header: {_preview(samples[positions < 0])}.")
    n_fields = 2 + len(header.samples)
    n_rows = 0
    with open_text(path) as fh:
        for _ in range(_N_HEADER_LINES):
            fh.readline()
        line_no = _N_HEADER_LINES
        while True:
            lines = list(itertools.islice(fh, chunk_size))
            if not lines:
                break
            gene_ids, symbols, numbers, line_nos = [], [], [], []
            for offset, line in enumerate(lines, start=line_no + 1):
                if not line.strip():
                    continue
                n = line.count("\t") + 1
                if n != n_fields:
                    raise ValueError(
                        f"{path}, line {offset}: ragged row with {n} tab-separated fields; the header has {n_fields}."
                    )
                gene_id, symbol, rest = line.split("\t", 2)
                gene_ids.append(gene_id)
                symbols.append(symbol)
                numbers.append(rest)
                line_nos.append(offset)
            line_no += len(lines)
            if not numbers:
                continue
            gene_ids = np.array(gene_ids, dtype=object)
            counts = _parse_counts(numbers, positions, gene_ids, samples, line_nos, path)
            n_rows += len(numbers)
            yield gene_ids, np.array(symbols, dtype=object), counts
    if n_rows == 0:
        raise ValueError(f"{path}: the GCT file has no gene rows.")
    if n_rows != header.declared_shape[0]:
        logger.debug(
            "%s: read %d gene rows; the dimension line declares %d.", path, n_rows, header.declared_shape[0]
        )


def _parse_counts(
    numbers: list[str],
    positions: np.ndarray,
    gene_ids: np.ndarray,
    samples: pd.Index,
    line_nos: list[int],
    path,
) -> np.ndarray:
    """Return the count fields of some GCT rows (after ``Name`` and ``Description``) as ``int32``.

    Plain integers take a fast path; anything else is re-parsed to name the offending value.
    """
    try:
        values = np.loadtxt(
            numbers, dtype=np.int64, delimiter="\t", usecols=positions, comments=None, ndmin=2
        )
    except ValueError:
        values = _parse_counts_slowly(numbers, positions, gene_ids, samples, line_nos, path)
    return _checked_int32(values, gene_ids, samples, line_nos, path)


def _parse_counts_slowly(
    numbers: list[str],
    positions: np.ndarray,
    gene_ids: np.ndarray,
    samples: pd.Index,
    line_nos: list[int],
    path,
) -> np.ndarray:
    """Return the count fields as numbers, raising a :class:`ValueError` that names the first non-number."""
    table = pd.read_csv(
        io.StringIO("".join(numbers)),
        sep="\t",
        header=None,
        usecols=list(positions),
        na_filter=False,
        engine="c",
    )
    table = table[list(positions)]
    for j, column in enumerate(table.columns):
        if table[column].dtype != object:
            continue
        numeric = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(numeric.isna().to_numpy())
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"{path}, line {line_nos[i]}: non-numeric count {table[column].iloc[i]!r} for gene "
                f"{gene_ids[i]!r} in sample {samples[j]!r}."
            )
        table[column] = numeric
    return table.to_numpy()


def _checked_int32(
    values: np.ndarray, gene_ids: np.ndarray, samples: pd.Index, line_nos: list[int], path
) -> np.ndarray:
    """Return ``values`` (genes x samples) as ``int32``, raising a :class:`ValueError` on any invalid count."""
    problems = []
    if values.dtype.kind == "f":
        problems += [(~np.isfinite(values), "non-finite"), (values != np.floor(values), "non-integer")]
    problems += [(values < 0, "negative"), (values > _INT32_MAX, "too large (beyond int32)")]
    for mask, what in problems:
        if mask.any():
            i, j = (int(k[0]) for k in np.nonzero(mask))
            raise ValueError(
                f"{path}, line {line_nos[i]}: {what} count {values[i, j].item()!r} for gene {gene_ids[i]!r} in sample "
                f"{samples[j]!r}; read counts must be non-negative integers."
            )
    return values.astype(np.int32)
