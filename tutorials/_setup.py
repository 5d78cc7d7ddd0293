"""Shared first cell of the tutorials: fast mode, quiet training, a step timer and the hardware.

Each tutorial starts with::

    import _setup  # first: it quiets what the imports below would print

    ...
    FAST = _setup.setup()
    timed, timings = _setup.timed, _setup.timings

(Jupyter started in ``tutorials/`` finds this file; ``tutorials/run_fast.py`` puts the folder on
``PYTHONPATH``.) Nothing here is needed to use ``hyfa``: it only makes the notebooks' outputs short
and their timings interpretable.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import warnings
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

# tqdm (imported by scvi-tools) warns once, on import, in a notebook without ipywidgets.
warnings.filterwarnings("ignore", message="IProgress not found")
# mudata 0.3 warns on every MuData the notebooks build or copy themselves (hyfa's own are quiet).
warnings.filterwarnings("ignore", message=r".*pull_on_update.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"Cannot join columns with the same name", category=UserWarning)

#: Seconds of each step timed with :func:`timed`, by step name.
timings: dict[str, float] = {}


@contextmanager
def timed(step: str):
    """Record and print the wall-clock time of a step."""
    start = time.perf_counter()
    yield
    timings[step] = time.perf_counter() - start
    print(f"{step}: {timings[step]:.1f} s")


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def setup(threads: int | None = 1) -> bool:
    """Prepare a tutorial notebook and print the software and hardware; return whether fast mode is on.

    - Fast mode: ``HYFA_TUTORIAL_FAST=1`` (set by ``tutorials/run_fast.py``, which CI runs) makes the
      notebooks shrink their sizes and epochs; their outputs are then not meaningful.
    - Quiet: scvi-tools' and Lightning's log messages at WARNING and above only (no "GPU
      available: False" banner on every training), and (on importing this module) no
      ``IProgress`` warning of tqdm in a notebook without widgets. (hyfa itself already silences Lightning's and mudata's noise
      during its own calls.)
    - ``threads``: torch threads. The machine these notebooks ran on has 2 cores shared with other
      jobs, where 2 torch threads ran about 10x slower than 1 (they wait for each other while the
      cores are busy elsewhere). On a machine of your own pass ``None`` to keep torch's default.
    """
    import scvi
    import torch

    import hyfa

    scvi.settings.verbosity = logging.WARNING
    for name in ("lightning.pytorch", "lightning.fabric"):  # "GPU available: ..." on every training
        logging.getLogger(name).setLevel(logging.WARNING)
    if threads is not None:
        torch.set_num_threads(threads)
    fast = os.environ.get("HYFA_TUTORIAL_FAST", "0") == "1"
    print(
        f"hyfa {hyfa.__version__}, scvi-tools {version('scvi-tools')}, torch {torch.__version__}, "
        f"scanpy {version('scanpy')}, Python {platform.python_version()}"
    )
    print(f"CPU: {_cpu_name()}, {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads")
    print(f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"Fast mode: {fast}")
    return fast
