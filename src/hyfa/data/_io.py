"""Opening possibly gzip-compressed text files, detected by content rather than by file name."""

from __future__ import annotations

import gzip
from os import PathLike
from pathlib import Path
from typing import TextIO

_GZIP_MAGIC = b"\x1f\x8b"


def open_text(path: str | PathLike) -> TextIO:
    """Return ``path`` opened for reading text, decompressing gzip (recognised by its magic bytes).

    Parameters
    ----------
    path
        Plain or gzip-compressed UTF-8 text file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == _GZIP_MAGIC:
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")
