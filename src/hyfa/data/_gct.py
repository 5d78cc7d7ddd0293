"""Streaming reader for GCT 1.2 count tables (GTEx portal ``gene_reads`` files), in row chunks.

The dimension line of a GCT file is not trusted: the bundled 59-gene excerpt keeps the
``56200 17382`` of the full table. Rows are counted as they are read instead. Lines are read as
bytes: a first pass (:func:`read_gct_genes`) looks only at the ``Name`` and ``Description``
fields, and :func:`iter_gct_counts` parses the numbers of the requested rows only.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from os import PathLike

import numpy as np
import pandas as pd

from hyfa._checks import duplicates, preview

from ._io import _READ_ERRORS, open_binary, read_error, read_errors

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
    with open_binary(path, buffer_size=io.DEFAULT_BUFFER_SIZE) as fh, read_errors(path, "header"):
        raw = [fh.readline() for _ in range(_N_HEADER_LINES)]
    lines = []
    for line_no, line in enumerate(raw, start=1):
        with read_errors(path, f"line {line_no}"):
            lines.append(line.decode("utf-8"))
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
        raise ValueError(f"{path}: duplicated sample ids in the header: {preview(duplicates(samples))}.")
    if (samples == "").any():
        raise ValueError(
            f"{path}: empty sample id in the header (line 3), at column {int(np.argmax(samples == '')) + 3}."
        )
    declared = (int(dim_fields[0]), int(dim_fields[1]))
    return GCTHeader(declared_shape=declared, samples=samples)


def read_gct_genes(path: str | PathLike) -> pd.DataFrame:
    """Return the gene rows of a GCT file (``Name``, ``Description``, line number) without parsing any count.

    Only the first two fields of each line are looked at, so this costs little more than
    decompressing the file. Blank lines are skipped.

    Parameters
    ----------
    path
        GCT 1.2 file, plain or gzip-compressed.

    Returns
    -------
    One row per gene row of the file, in file order, with columns ``gene_ids`` (``Name``),
    ``symbols`` (``Description``) and ``line`` (1-based line number in the file).
    """
    gene_ids, symbols, line_nos = [], [], []
    for line_no, line in _iter_lines(path):
        gene_id, symbol, _ = _split_names(line, line_no, path)
        gene_ids.append(gene_id)
        symbols.append(symbol)
        line_nos.append(line_no)
    if not gene_ids:
        raise ValueError(f"{path}: the GCT file has no gene rows.")
    declared = read_gct_header(path).declared_shape[0]
    if len(gene_ids) != declared:
        logger.debug("%s: %d gene rows; the dimension line declares %d.", path, len(gene_ids), declared)
    return pd.DataFrame(
        {
            "gene_ids": np.array(gene_ids, dtype=object),
            "symbols": np.array(symbols, dtype=object),
            "line": np.array(line_nos, dtype=np.int64),
        }
    )


def iter_gct_counts(
    path: str | PathLike,
    samples: Sequence[str] | None = None,
    rows: np.ndarray | None = None,
    chunk_size: int = 500,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield a GCT file's counts in chunks of gene rows, checked and cast to ``int32``.

    Only the requested rows and sample columns are kept, so memory is bounded by ``chunk_size``
    times the number of samples, whatever the file size. Rows that are not requested are skipped
    without parsing their numbers. Raises :class:`ValueError` naming the file and line (and the
    gene and sample) for ragged rows, for non-numeric, non-finite, negative, non-integer or too
    large counts, and for a truncated or corrupt file.

    Parameters
    ----------
    path
        GCT 1.2 file, plain or gzip-compressed.
    samples
        Sample ids to keep, in the order of the yielded columns; ``None`` keeps all, in file order.
    rows
        Boolean mask over the file's gene rows (as listed by :func:`read_gct_genes`) of the rows to
        parse; ``None`` parses all.
    chunk_size
        Number of rows parsed at a time.

    Yields
    ------
    The ordinals of the chunk's gene rows (0-based, among all gene rows of the file) and a
    rows x samples ``int32`` count matrix.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    header = read_gct_header(path)
    samples = header.samples if samples is None else pd.Index(samples)
    if samples.has_duplicates:
        raise ValueError(f"Samples requested twice: {preview(duplicates(samples))}.")
    positions = header.samples.get_indexer(samples)
    if (positions < 0).any():
        raise ValueError(f"{path}: samples not in the GCT header: {preview(samples[positions < 0])}.")
    parser = _RowParser(path, samples, positions, n_fields=2 + len(header.samples))
    chunk = []
    for ordinal, (line_no, line) in enumerate(_iter_lines(path)):
        if rows is not None and (ordinal >= len(rows) or not rows[ordinal]):
            continue
        chunk.append((ordinal, line_no, line))
        if len(chunk) == chunk_size:
            yield parser.parse(chunk)
            chunk = []
    if chunk:
        yield parser.parse(chunk)


def _iter_lines(path: str | PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield the line number and bytes of each non-blank line after the header, naming the file on read errors."""
    line_no = 0
    with open_binary(path) as fh:
        try:
            for line_no, line in enumerate(fh, start=1):
                if line_no > _N_HEADER_LINES and not line.isspace():
                    yield line_no, line
        except _READ_ERRORS as err:
            raise read_error(path, err, f"after line {line_no}") from err


def _split_names(line: bytes, line_no: int, path) -> tuple[str, str, int]:
    """Return a GCT row's ``Name``, ``Description`` and the offset of its first count field."""
    first = line.find(b"\t")
    second = line.find(b"\t", first + 1) if first >= 0 else -1
    if second < 0:
        raise ValueError(
            f"{path}, line {line_no}: ragged row without counts; expected 'Name', 'Description' and counts, "
            "tab-separated."
        )
    try:
        return line[:first].decode("utf-8"), line[first + 1 : second].decode("utf-8"), second + 1
    except UnicodeDecodeError as err:
        raise read_error(path, err, f"line {line_no}") from err


class _RowParser:
    """Parses chunks of GCT rows into checked ``int32`` counts of some sample columns."""

    def __init__(self, path, samples: pd.Index, positions: np.ndarray, n_fields: int) -> None:
        self.path = path
        self.samples = samples
        self.positions = positions
        self.n_fields = n_fields

    def parse(self, chunk: list[tuple[int, int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        """Return the ordinals and the checked ``int32`` counts of a chunk of ``(ordinal, line number, line)``."""
        values = np.empty((len(chunk), len(self.positions)), dtype=np.int64)
        gene_ids = np.empty(len(chunk), dtype=object)
        line_nos = [line_no for _, line_no, _ in chunk]
        for i, (_, line_no, line) in enumerate(chunk):
            gene_ids[i], _, start = _split_names(line, line_no, self.path)
            values[i] = self._parse_row(line, start, line_no, gene_ids[i])
        counts = _checked_int32(values, gene_ids, self.samples, line_nos, self.path)
        return np.array([ordinal for ordinal, _, _ in chunk], dtype=np.int64), counts

    def _parse_row(self, line: bytes, start: int, line_no: int, gene_id: str) -> np.ndarray:
        """Return one row's counts of the kept samples; plain integers take a fast path."""
        try:
            row = np.fromstring(line[start:], dtype=np.int64, sep="\t")
        except ValueError:
            row = None
        if row is not None and len(row) == self.n_fields - 2:
            return row[self.positions]
        n = line.count(b"\t") + 1
        if n != self.n_fields:
            raise ValueError(
                f"{self.path}, line {line_no}: ragged row with {n} tab-separated fields; the header has "
                f"{self.n_fields}."
            )
        ids, lines = np.array([gene_id], dtype=object), [line_no]
        with read_errors(self.path, f"line {line_no}"):
            text = line[start:].decode("utf-8")
        slow = _parse_counts_slowly([text], self.positions, ids, self.samples, lines, self.path)
        return _checked_int32(slow, ids, self.samples, lines, self.path)[0]


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
