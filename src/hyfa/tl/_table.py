"""The tidy results table of :func:`~hyfa.tl.evaluate_imputation`: its columns, builder and check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: The two metrics, always reported.
METRICS = ("per-sample", "per-gene")
#: Columns of the tidy table returned by :func:`~hyfa.tl.evaluate_imputation`.
COLUMNS = ["method", "sources", "target", "id", "metric", "value", "source_tissues", "source_setting"]
#: Columns every results table has (older tables lack ``source_setting``).

#: Scores of one method for one target: ``(metric, ids, values)`` per metric.
TargetScores = list[tuple[str, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Scored:
    """The scores of one method in one source setting.

    ``source_tissues`` labels the tissues the predictions used; ``source_setting`` names the setting
    they were made in, which differs from the setting they are reported in for reused predictions.
    """

    method: str
    source_tissues: str
    source_setting: str
    per_target: dict[str, TargetScores] = field(default_factory=dict)


def _results_frame(
    settings: Sequence[str], selection: dict, scored: dict[str, list[_Scored]]
) -> pd.DataFrame:
    """Return the tidy table: rows in the order of ``settings``, then targets, then methods.

    Parameters
    ----------
    settings
        Setting names, in the order of the table.
    selection
        ``{setting: {target: donors}}``; its targets, in order, are the setting's targets.
    scored
        The scores of each setting, in method order.
    """
    blocks = []
    for setting in settings:
        for target in selection[setting]:
            for entry in scored.get(setting, []):
                for metric, ids, values in entry.per_target.get(target, []):
                    labels = (
                        entry.method,
                        setting,
                        target,
                        metric,
                        entry.source_tissues,
                        entry.source_setting,
                    )
                    blocks.append(
                        (labels, np.asarray(ids, dtype=object), np.asarray(values, dtype=np.float64))
                    )
    if not blocks:
        return pd.DataFrame({c: pd.Series(dtype=np.float64 if c == "value" else object) for c in COLUMNS})
    sizes = [len(ids) for _, ids, _ in blocks]
    labels = np.asarray([label for label, _, _ in blocks], dtype=object)
    method, setting, target, metric, source_tissues, source_setting = (
        np.repeat(labels[:, i], sizes) for i in range(labels.shape[1])
    )
    data = {
        "method": method,
        "sources": setting,
        "target": target,
        "id": np.concatenate([ids for _, ids, _ in blocks]),
        "metric": metric,
        "value": np.concatenate([values for _, _, values in blocks]),
        "source_tissues": source_tissues,
        "source_setting": source_setting,
    }
    return pd.DataFrame(data, columns=COLUMNS)
