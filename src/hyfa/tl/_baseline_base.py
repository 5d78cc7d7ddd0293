"""Common machinery of the imputation baselines: input checks, lazy per-pair fits, AnnData output."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
from anndata import AnnData
from mudata import MuData
from threadpoolctl import ThreadpoolController

from hyfa._utils import as_list as _as_list

from ._data_access import (
    _check_donors,
    _check_tissues,
    _donor_obs,
    _donors_with_all,
    _format_names,
    _shared_genes,
    _tissue_matrix,
)

_THREADPOOLS: list[ThreadpoolController] = []


def _single_threaded_blas():
    """Return a context manager limiting BLAS to one thread (the library scan is done once and cached)."""
    if not _THREADPOOLS:
        _THREADPOOLS.append(ThreadpoolController())
    return _THREADPOOLS[0].limit(limits=1, user_api="blas")


class _BaseImputation:
    """Common machinery of the imputation baselines.

    Subclasses implement :meth:`_predict`, which returns a donors x genes array for one target tissue.
    """

    #: Whether :meth:`get_imputed_expression` needs ``source_tissues``.
    _requires_sources: bool = False
    #: Whether :meth:`fit` must be called before :meth:`get_imputed_expression`.
    _requires_fit: bool = True

    def __init__(self, mdata: MuData, layer: str | None = None, gene_mask_key: str | None = None):
        if not isinstance(mdata, MuData):
            raise TypeError(f"`mdata` must be a MuData object, got {type(mdata).__name__}.")
        self.mdata = mdata
        self.layer = layer
        self.gene_mask_key = gene_mask_key
        self.genes_: pd.Index = _shared_genes(mdata, gene_mask_key)
        self.train_donors_: pd.Index | None = None
        self._fitted: dict[tuple[tuple[str, ...], str], Any] = {}

    def __repr__(self) -> str:
        status = "unfitted" if self.train_donors_ is None else f"fitted on {len(self.train_donors_)} donors"
        return (
            f"{type(self).__name__}({len(self.mdata.mod)} tissues, {len(self.genes_)} genes, "
            f"layer={self.layer!r}, {status})"
        )

    # ------------------------------------------------------------------ public API
    @property
    def source_tissues(self) -> tuple[str, ...] | None:
        """Source tissues the baseline always predicts from; ``None``: those of the setting it is evaluated in.

        :func:`~hyfa.tl.evaluate_imputation` evaluates a baseline with fixed sources only in the source
        settings that include all of them, and gives it exactly these.
        """
        return None

    def fit(self, train_donors: Sequence[str]) -> Self:
        """Record the training donors; models are fitted lazily per (source tissues, target tissue).

        Parameters
        ----------
        train_donors
            Names of the training donors (entries of ``mdata.obs_names``). Only these donors are used
            to fit the baseline.

        Returns
        -------
        The fitted baseline (``self``), for chaining.
        """
        train = _as_list(train_donors)
        _check_donors(self.mdata, train, what="training donors")
        self.train_donors_ = pd.Index(train)
        self._fitted = {}
        return self

    def get_imputed_expression(
        self,
        mdata: MuData | None = None,
        target_tissues: str | Sequence[str] | None = None,
        source_tissues: str | Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
    ) -> AnnData | MuData:
        """Impute the expression of target tissues for the requested donors.

        Parameters
        ----------
        mdata
            Multi-tissue data holding the source tissues of the donors to predict (matched by name).
            ``None`` uses the data the baseline was created with.
        target_tissues
            Tissue(s) to impute. A string returns an :class:`~anndata.AnnData`, a list returns a
            :class:`~mudata.MuData` with one modality per target tissue. ``None`` means every tissue
            that is not a source.
        source_tissues
            Tissue(s) whose measured expression informs the prediction. Required by baselines that use
            them; every predicted donor must be observed in all of them.
        donors
            Donors to predict, in order. ``None`` takes every donor of ``mdata`` observed in all
            ``source_tissues`` (every donor when no sources are used).

        Returns
        -------
        Per target tissue, an AnnData of ``donors`` x genes whose ``X`` holds the ``float32`` predictions,
        with the donor-level columns of ``mdata.obs`` and the target tissue's ``var``;
        ``uns["hyfa"]`` records the method, target and source tissues.
        """
        self._check_fitted()
        mdata = self.mdata if mdata is None else mdata
        if not isinstance(mdata, MuData):
            raise TypeError(f"`mdata` must be a MuData object, got {type(mdata).__name__}.")
        single = isinstance(target_tissues, str)
        sources = self._resolve_sources(_as_list(source_tissues))
        if target_tissues is None:
            targets = [t for t in self.mdata.mod if t not in sources]
        else:
            targets = _as_list(target_tissues)
        if len(targets) == 0:
            raise ValueError("No target tissues.")
        if len(set(targets)) != len(targets):
            raise ValueError(f"Duplicated target tissues: {targets}.")
        _check_tissues(self.mdata, targets, what="target tissue")
        if sources:
            _check_tissues(self.mdata, sources, what="source tissue")
            _check_tissues(mdata, sources, what="source tissue")
            overlap = [t for t in targets if t in sources]
            if overlap:
                raise ValueError(f"Target tissue(s) {_format_names(overlap)} also given as source tissues.")
        elif self._requires_sources:
            raise ValueError(
                f"{type(self).__name__} needs `source_tissues`; available tissues: {_format_names(list(mdata.mod))}."
            )

        if donors is None:
            donors = mdata.obs_names[_donors_with_all(mdata, sources, mdata.obs_names)]
            if len(donors) == 0:
                raise ValueError(f"No donor of `mdata` is observed in all source tissues {sources}.")
        donors = _as_list(donors)
        _check_donors(mdata, donors)
        lacking = np.asarray(donors)[~_donors_with_all(mdata, sources, donors)]
        if len(lacking):
            raise ValueError(
                f"Donors lacking at least one of the source tissues {sources}: {_format_names(lacking)}."
            )

        # Same obs / var / uns layout as `hyfa.HYFA.get_imputed_expression`.
        obs = _donor_obs(mdata, donors)
        out = {}
        for target in targets:
            # The matrices are small (donors x genes): multithreaded BLAS only adds overhead, and on a busy
            # machine OpenBLAS threads can make a 300 x 200 SVD take seconds instead of milliseconds.
            with _single_threaded_blas():
                pred = self._predict(mdata, target, sources, donors)
            var_source = mdata.mod[target] if target in mdata.mod else self.mdata.mod[target]
            adata = AnnData(
                X=np.asarray(pred, dtype=np.float32),
                obs=obs.copy(),
                var=var_source.var.loc[self.genes_].copy(),
            )
            adata.uns["hyfa"] = {
                "method": type(self).__name__,
                "target_tissue": target,
                "source_tissues": list(sources),
            }
            out[target] = adata
        if single:
            return out[targets[0]]
        with warnings.catch_warnings():
            # Tissues share gene names, which mudata reports when pulling columns; nothing to act on.
            warnings.filterwarnings("ignore", message=".*pull_on_update.*", category=FutureWarning)
            warnings.filterwarnings(
                "ignore", message="Cannot join columns with the same name", category=UserWarning
            )
            return MuData(out)

    # ------------------------------------------------------------------ helpers for subclasses
    def _check_fitted(self) -> None:
        if self._requires_fit and self.train_donors_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call `.fit(train_donors)` first.")

    def _resolve_sources(self, sources: list[str] | None) -> list[str]:
        return [] if sources is None else sources

    def _matrix(self, mdata: MuData, tissue: str, donors: Sequence[str]) -> np.ndarray:
        return _tissue_matrix(mdata, tissue, donors, self.layer, self.genes_)

    def _training_donors(self, tissues: Sequence[str]) -> pd.Index:
        """Training donors observed in every tissue of ``tissues`` (error if there are none)."""
        assert self.train_donors_ is not None
        keep = self.train_donors_[_donors_with_all(self.mdata, tissues, self.train_donors_)]
        if len(keep) == 0:
            raise ValueError(f"No training donor is observed in all of the tissues {list(tissues)}.")
        return keep

    def _cached(self, sources: Sequence[str], target: str, fit_fn) -> Any:
        key = (tuple(sources), target)
        if key not in self._fitted:
            self._fitted[key] = fit_fn()
        return self._fitted[key]

    def _predict(self, mdata: MuData, target: str, sources: list[str], donors: list[str]) -> np.ndarray:
        raise NotImplementedError
