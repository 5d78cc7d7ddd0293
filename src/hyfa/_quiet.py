"""Local silencing of the messages that hyfa's own calls trigger in Lightning and mudata.

Everything here is a context manager: warning filters are restored on exit
(:class:`warnings.catch_warnings`) and the logging filter is removed, so a user's other code,
and their own Lightning or mudata calls, see every message as before.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Iterator

# Lightning's rank-zero messages (rank_zero_info) go through one of these loggers, whichever of
# lightning.fabric / lightning.pytorch was imported last.
_LIGHTNING_RANK_ZERO_LOGGERS = (
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
)


class _DropMessages(logging.Filter):
    """Drop log records whose message contains any of ``fragments``."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextlib.contextmanager
def quiet_training() -> Iterator[None]:
    """Context for one ``Trainer.fit`` of a hyfa model: drop the messages that say nothing about it.

    - Lightning's advertisement for litlogger (an info log record on every fit);
    - the deprecation of ``LeafSpec`` that Lightning's own pytree helper triggers in torch >= 2.9;
    - "Found N module(s) in eval mode": hyfa keeps frozen or parameter-free modules in eval mode
      on purpose (e.g. the frozen bulk model while cell-type signatures train);
    - "number of training batches is smaller than the logging interval" (hyfa's ``train`` also
      passes a fitting ``log_every_n_steps``; this covers an explicit larger one).

    Everything else, including every other Lightning warning, still shows.
    """
    log_filter = _DropMessages("litlogger")
    loggers = [logging.getLogger(name) for name in _LIGHTNING_RANK_ZERO_LOGGERS]
    for rank_zero_logger in loggers:
        rank_zero_logger.addFilter(log_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*deprecated")
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
            yield
    finally:
        for rank_zero_logger in loggers:
            rank_zero_logger.removeFilter(log_filter)


def log_every_n_steps(
    n_train: int, batch_size: int, devices=None, num_nodes: int = 1, default: int = 50
) -> int:
    """Return Lightning's ``log_every_n_steps`` for an epoch of ``n_train`` donors: at most one epoch's batches.

    Lightning logs the training loss every ``log_every_n_steps`` batches (default 50) and warns when an
    epoch has fewer; HYFA's epochs are often a handful of batches. With ``devices`` processes (an int
    or a list of device ids) per node, each process sees ``1 / (devices * num_nodes)`` of the batches.
    """
    world = num_nodes * (
        len(devices)
        if isinstance(devices, list | tuple)
        else devices
        if isinstance(devices, int) and devices > 0
        else 1
    )
    per_process = math.ceil(n_train / max(1, batch_size * world))
    return max(1, min(default, per_process))
