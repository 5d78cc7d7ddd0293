"""Process memory and timing helpers of the training benchmarks (Linux; glibc for ``mallopt``)."""

from __future__ import annotations

import ctypes
import logging
import resource
import time
import warnings
from pathlib import Path


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed memory, so that large tensors reuse pages instead of faulting in new ones.

    Each large tensor is otherwise a fresh ``mmap``: its pages are faulted in and zeroed on
    first use, which in virtual machines can cost more than the arithmetic done on them.
    Returns whether the setting was applied (glibc only).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    )


def reset_peak_memory() -> bool:
    """Reset the kernel's peak resident set size of this process (Linux); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_gb(field: str) -> float | None:
    """Return a memory field of ``/proc/self/status`` (e.g. ``"VmRSS"``) in GB, or ``None``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def peak_memory_gb() -> float:
    """Return this process's peak resident set size since the last reset, in GB (else its lifetime peak)."""
    peak = _status_gb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def current_memory_gb() -> float:
    """Return this process's resident set size in GB (``nan`` where unknown)."""
    current = _status_gb("VmRSS")
    return float("nan") if current is None else current


def epoch_timer():
    """Return a Lightning callback timing training epochs without validation, and their training steps."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def __init__(self):
            self.epochs, self.steps = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self._start, self._validation, self._step_total = time.perf_counter(), 0.0, 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._step_start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self._step_total += time.perf_counter() - self._step_start

        def on_validation_epoch_start(self, trainer, pl_module):
            self._validation_start = time.perf_counter()

        def on_validation_epoch_end(self, trainer, pl_module):
            self._validation += time.perf_counter() - self._validation_start

        def on_train_epoch_end(self, trainer, pl_module):
            self.epochs.append(time.perf_counter() - self._start - self._validation)
            self.steps.append(self._step_total)

    return EpochTimer()


def median_time(function, repeats: int = 5) -> float:
    """Return the median wall time of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def quiet_training_logs() -> None:
    """Keep Lightning's and scvi-tools' messages to warnings, and drop mudata's and Lightning's known chatter."""
    import scvi

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*pull_on_update.*")
    warnings.filterwarnings("ignore", message="Cannot join columns with the same name.*")
    scvi.settings.verbosity = logging.WARNING
