"""Donors by name: rows in a MuData, the split of :meth:`HYFA.train`, and the defaults its size sets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._validation import _preview, split_labels

#: Donors per minibatch of the paper's tuned configuration.
PAPER_BATCH_SIZE = 63
#: Below this many training donors, training calibrates (cross-fitted) by default.
CALIBRATION_MAX_DONORS = 200


def n_training_donors(split: list[np.ndarray] | None, n_donors: int, train_size: float | None) -> int:
    """Return the number of training donors: of ``split``, else of scvi-tools' random split (``train_size`` 0.9)."""
    return len(split[0]) if split is not None else math.ceil(n_donors * (train_size or 0.9))


def auto_batch_size(n_train: int) -> int:
    """Return the default donors per minibatch: the paper's 63, fewer below 315 training donors (5 steps an epoch)."""
    return min(PAPER_BATCH_SIZE, max(16, n_train // 5))


def default_calibrate(n_train: int) -> bool:
    """Return whether :meth:`HYFA.train` calibrates by default: below 200 training donors."""
    return n_train < CALIBRATION_MAX_DONORS


class DonorMixin:
    """``_donor_indices`` and ``_donor_split`` of :class:`~hyfa.HYFA`."""

    def _donor_indices(
        self,
        mdata: MuData,
        donors: Sequence[str],
        what: str = "donors",
        allow_empty: bool = False,
        argument: str = "donors",
    ) -> np.ndarray:
        """Return the rows of ``donors`` in ``mdata.obs_names``, naming unknown and repeated donors."""
        donors = _as_list(donors)
        if not donors and not allow_empty:
            raise ValueError(f"{argument} is an empty list; pass None for the default, or donor names.")
        if mdata.obs_names.has_duplicates:
            dup = mdata.obs_names[mdata.obs_names.duplicated()].unique()
            raise ValueError(f"mdata.obs_names lists donors more than once: {_preview(dup)}.")
        idx = mdata.obs_names.get_indexer(donors)
        if (idx < 0).any():
            unknown = [d for d, i in zip(donors, idx, strict=True) if i < 0]
            raise ValueError(f"Unknown {what} (not in mdata.obs_names): {_preview(unknown)}.")
        if len(set(idx)) != len(idx):
            repeated = pd.Index(donors)[pd.Index(donors).duplicated()].unique()
            raise ValueError(f"{what.capitalize()} listed more than once: {_preview(repeated)}.")
        return idx

    def _donor_split(self, train_donors, validation_donors, split_key) -> list[np.ndarray] | None:
        mdata = self.adata
        if train_donors is not None:
            train = self._donor_indices(mdata, train_donors, "training donors", argument="train_donors")
            val = (
                np.array([], dtype=int)
                if validation_donors is None
                else self._donor_indices(mdata, validation_donors, "validation donors", allow_empty=True)
            )
        elif split_key is not None:
            if split_key not in mdata.obs.columns:
                raise KeyError(f"split_key {split_key!r} is not a column of mdata.obs.")
            train, val = split_labels(mdata.obs[split_key], split_key, mdata.obs_names)
        else:
            if validation_donors is not None:
                raise ValueError("validation_donors needs train_donors.")
            return None
        overlap = np.intersect1d(train, val)
        if len(overlap):
            raise ValueError(f"Donors both in training and validation: {_preview(mdata.obs_names[overlap])}.")
        test = np.setdiff1d(np.arange(mdata.n_obs), np.concatenate([train, val]))
        return [train, val, test]
