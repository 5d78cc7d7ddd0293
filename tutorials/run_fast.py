"""Re-execute every tutorial notebook in fast mode, so that the tutorials cannot rot.

Usage (from anywhere; needs the `doc` extra: ``pip install -e ".[doc]"``)::

    python tutorials/run_fast.py                # every tutorials/*.ipynb
    python tutorials/run_fast.py NOTEBOOK ...   # only these
    python tutorials/run_fast.py --keep DIR     # also keep the executed copies in DIR

Each notebook runs with ``HYFA_TUTORIAL_FAST=1`` (the notebooks shrink their sizes and epochs) and
``MPLBACKEND=Agg``, in a temporary directory, and the executed copy is written there (or to
``--keep DIR``): the committed notebooks, whose outputs come from a full run, are never touched. The exit status is 1 if any cell of any notebook raised, and the
failing notebook, cell and error are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

TUTORIALS = Path(__file__).resolve().parent
CELL_TIMEOUT_S = 600


def run_notebook(path: Path, workdir: Path) -> float:
    """Execute ``path`` in ``workdir`` (fast mode) and return the seconds it took; raise on a failing cell."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},  # the kernel's working directory
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:  # the executed copy, errors included, for inspection
        nbformat.write(notebook, workdir / path.name)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: all in tutorials/)"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the executed notebooks in DIR")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(TUTORIALS.glob("*.ipynb"))
    if not notebooks:
        print("run_fast: no notebooks found", file=sys.stderr)
        return 1
    # The kernel inherits the environment: fast mode, no display.
    os.environ["HYFA_TUTORIAL_FAST"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    # The notebooks' first cell imports tutorials/_setup.py; the kernel runs in a temporary directory.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TUTORIALS), os.environ.get("PYTHONPATH")]))
    failed = []
    with tempfile.TemporaryDirectory(prefix="hyfa-tutorials-") as tmp:
        root = args.keep or Path(tmp)
        for path in notebooks:
            workdir = root / path.stem
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                seconds = run_notebook(path.resolve(), workdir)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                failed.append(path.name)
                print(f"FAILED {path.name}:\n{error}", file=sys.stderr)
            else:
                print(f"ok     {path.name} ({seconds:.0f} s, fast mode)")
    print(f"{len(notebooks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
