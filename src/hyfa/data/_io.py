"""Opening possibly gzip-compressed files, detected by content rather than by file name."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import BinaryIO, TextIO

_GZIP_MAGIC = b"\x1f\x8b"
_READ_BUFFER = 1 << 20

#: Low-level errors of reading a file's content: truncated or corrupt gzip, undecodable text.
_READ_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, UnicodeDecodeError)


def _checked_path(path: str | PathLike) -> Path:
    """Return ``path`` as a :class:`~pathlib.Path`, raising :class:`FileNotFoundError` if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    return path


def _is_gzip(path: Path) -> bool:
    """Return whether ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def open_text(path: str | PathLike) -> TextIO:
    """Return ``path`` opened for reading text, decompressing gzip (recognised by its magic bytes).

    A truncated or corrupt gzip stream raises :class:`ValueError` naming ``path``, whoever reads.

    Parameters
    ----------
    path
        Plain or gzip-compressed UTF-8 text file.
    """
    path = _checked_path(path)
    if _is_gzip(path):
        stream = io.BufferedReader(_NamingReadErrors(gzip.GzipFile(path, "rb"), path))
        return io.TextIOWrapper(stream, encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def open_binary(path: str | PathLike, buffer_size: int = _READ_BUFFER) -> BinaryIO:
    """Return ``path`` opened for reading bytes with a large buffer, decompressing gzip (by its magic bytes).

    Iterating over the result yields lines as :class:`bytes`, which is much faster than text for
    long lines of numbers.

    Parameters
    ----------
    path
        Plain or gzip-compressed file.
    buffer_size
        Bytes read (after decompression) ahead of the caller.
    """
    path = _checked_path(path)
    if _is_gzip(path):
        return io.BufferedReader(gzip.GzipFile(path, "rb"), buffer_size=buffer_size)
    return open(path, "rb", buffering=buffer_size)


@contextmanager
def read_errors(path: str | PathLike, where: str = "") -> Iterator[None]:
    """Return a context that re-raises low-level read errors as :class:`ValueError` naming ``path``.

    A truncated or corrupt gzip stream (:class:`EOFError`, :class:`gzip.BadGzipFile`,
    :class:`zlib.error`) or undecodable text (:class:`UnicodeDecodeError`) otherwise surfaces
    without the file name.

    Parameters
    ----------
    path
        The file being read, named in the message.
    where
        Optional position, e.g. ``"after line 1234"``, added to the message.
    """
    try:
        yield
    except _READ_ERRORS as err:
        raise read_error(path, err, where) from err


def read_error(path: str | PathLike, err: BaseException, where: str = "") -> ValueError:
    """Return a :class:`ValueError` naming ``path`` (and ``where`` in it) for the low-level read error ``err``."""
    at = f" ({where})" if where else ""
    return ValueError(
        f"{path}: cannot read the file{at}; it is truncated, corrupt or not UTF-8 text: {type(err).__name__}: {err}"
    )


class _NamingReadErrors(io.RawIOBase):
    """Binary stream over ``stream`` whose low-level read errors are re-raised as :class:`ValueError` naming ``path``."""

    def __init__(self, stream: BinaryIO, path: Path) -> None:
        self._stream = stream
        self._path = path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            return self._stream.readinto(buffer)
        except _READ_ERRORS as err:
            raise read_error(self._path, err) from err

    def close(self) -> None:
        self._stream.close()
        super().close()
