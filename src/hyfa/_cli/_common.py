"""Shared pieces of the ``hyfa`` command line: argument checks, file reading, exit-status errors."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

EXIT_STATUS = """exit status:
  0  success
  1  hyfa refused the data or the arguments (e.g. an unknown tissue or donor); the message says why
  2  usage error: unknown or malformed option, missing input file, existing output without --overwrite
"""

#: File written next to the saved model by ``hyfa train``: the command's arguments, for the record.
CLI_RECORD = "hyfa_train.json"


class CLIError(Exception):
    """An error of the user's arguments or data, reported without a traceback (exit status 1)."""


# -- shared helpers ------------------------------------------------------------------------------


def _existing_file(parser: argparse.ArgumentParser, path: str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        parser.error(f"{what} {path!r} does not exist or is not a file")
    return p


def _output(parser: argparse.ArgumentParser, path: str, overwrite: bool) -> Path:
    p = Path(path)
    if p.exists() and not overwrite:
        parser.error(f"output {path!r} already exists (pass --overwrite to replace it)")
    return p


def _read_mudata(path: Path):
    import mudata

    from hyfa._mudata import quiet_mudata

    with quiet_mudata():
        return mudata.read_h5mu(path)


def _read_names(parser: argparse.ArgumentParser, path: str | None, what: str) -> list[str] | None:
    """One name per line; blank lines and lines starting with ``#`` are skipped."""
    if path is None:
        return None
    text = _existing_file(parser, path, what).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _parse_chunk(parser: argparse.ArgumentParser, text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        parser.error(f"--chunk must be I/N with integers 1 <= I <= N, e.g. 3/10; got {text!r}")
    if not 1 <= i <= n:
        parser.error(f"--chunk must be I/N with 1 <= I <= N; got {text!r}")
    return i, n


def donor_chunk(donors: list[str], i: int, n: int) -> list[str]:
    """Return chunk ``i`` (1-based) of ``n`` near-equal contiguous chunks of ``donors``.

    Chunks 1..n partition ``donors``: every donor is in exactly one chunk, in its order.
    """
    size, extra = divmod(len(donors), n)
    start = (i - 1) * size + min(i - 1, extra)
    return donors[start : start + size + (i <= extra)]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare string, e.g. norm=layer


def _parse_params(parser: argparse.ArgumentParser, items: list[str] | None) -> dict:
    params = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            parser.error(f"--model-param must be NAME=VALUE, e.g. n_metagenes=20; got {item!r}")
        params[key] = _literal(value)
    return params


def _devices(text: str):
    if text == "auto":
        return text
    if "," in text:
        return [int(d) for d in text.split(",") if d]
    return int(text)


def _global_rank() -> int:
    """Return the rank of this process in a multi-process (DDP) training run; 0 when there is none."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return int(os.environ.get("LOCAL_RANK", "0") or 0)


def _quiet_scvi() -> None:
    import logging

    import scvi

    scvi.settings.verbosity = logging.WARNING


# -- hyfa demo -----------------------------------------------------------------------------------
