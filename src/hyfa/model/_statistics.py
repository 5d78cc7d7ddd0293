"""Per-tissue statistics of the registered expression that initialize a :class:`~hyfa.module.HYFAModule`."""

from __future__ import annotations

import numpy as np

from hyfa.module import ENCODER_TARGET_SUM

from ._registration import TissueBlocks


def _samples(rows: np.ndarray, t: int) -> np.ndarray:
    return np.sort(rows[rows[:, t] >= 0, t])


def input_statistics(blocks: TissueBlocks, rows: np.ndarray, counts: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the per-(tissue, gene) mean and sd of what the module standardizes, over the registered samples.

    Of ``log1p`` counts per 10,000 when ``counts``; of the expression otherwise. ``rows`` is the
    donors x tissues table of sample rows (-1 where absent). Tissues without samples get 0 and 1.
    """
    loc, scale = np.zeros((rows.shape[1], blocks.n_genes)), np.ones((rows.shape[1], blocks.n_genes))
    for t in range(rows.shape[1]):
        samples = _samples(rows, t)
        if len(samples) == 0:
            continue
        block = blocks.values(t, samples).astype(np.float64)
        if counts:
            block = np.log1p(block * (ENCODER_TARGET_SUM / np.maximum(block.sum(axis=1, keepdims=True), 1.0)))
        loc[t] = block.mean(axis=0)
        if len(samples) > 1:
            scale[t] = block.std(axis=0)
    return loc, scale


def log_library_statistics(blocks: TissueBlocks, rows: np.ndarray) -> dict[str, float]:
    """Return the mean and sd of the log total counts of all registered samples (init of the library model)."""
    totals = [
        blocks.values(t, _samples(rows, t)).sum(axis=1, dtype=np.float64)
        for t in range(rows.shape[1])
        if (rows[:, t] >= 0).any()
    ]
    logs = np.log(np.maximum(np.concatenate(totals), 1.0))
    return {
        "log_library_mean": float(logs.mean()),
        "log_library_sd": float(logs.std()) if len(logs) > 1 else 1.0,
    }
