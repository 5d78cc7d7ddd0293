"""The completed cohort of :class:`~hyfa.HYFA`: every donor in every chosen tissue, observed or imputed.

A completed tissue holds, for each donor, the registered sample where the donor gave the tissue and
HYFA's prediction from all of the donor's tissues where it did not. It is built from the same plan
and prediction loop as :meth:`~hyfa.HYFA.get_imputed_expression` with ``missing_only=True,
exclude_target=False`` (so its imputed rows are exactly what that call returns) and either gathered
in memory or streamed to an ``.h5mu`` file with the writer of
:meth:`~hyfa.HYFA.write_imputed_expression`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike

import numpy as np
from anndata import AnnData
from mudata import MuData

from hyfa._access import donor_columns

from ._scvi_internals import sample_rows_of, tissue_blocks
from ._writer import ImputedWriter

logger = logging.getLogger(__name__)

#: Observed rows copied at once when streaming a completed tissue to disk.
_OBSERVED_CHUNK = 1024


class _Completion:
    """Rows of each completed tissue: which donors, which of them are observed, where their samples are."""

    def __init__(self, model, plan):
        manager = model.get_anndata_manager(plan.mdata, required=True)
        self.plan = plan
        self.blocks = tissue_blocks(manager)
        self.samples = sample_rows_of(manager)[plan.indices]
        self.include = {t: plan.observed[:, t] | plan.keep[t] for t in plan.targets}
        # output row of each donor (-1: left out), and of each imputed donor as the predictions index it
        self.position = {t: np.cumsum(self.include[t]) - 1 for t in plan.targets}

    def observed_rows(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(output rows, sample rows in the tissue)`` of the donors who gave tissue ``t``."""
        donors = np.flatnonzero(self.plan.observed[:, t])
        return self.position[t][donors], self.samples[donors, t]

    def obs(self, model, t: int):
        obs = model._target_obs_rows(self.plan, self.include[t])
        obs["imputed"] = ~self.plan.observed[self.include[t], t]
        return obs

    def uns(self, model, t: int) -> dict:
        return {**model._target_uns(self.plan, t), "completed": True}


class CompletionMixin:
    """The completed cohort of :class:`~hyfa.HYFA`: observed samples plus imputations of the missing ones."""

    def _completion(self, mdata, tissues, source_tissues, donors) -> _Completion:
        plan = self._plan(mdata, donors, source_tissues, tissues, exclude_target=False, missing_only=True)
        return _Completion(self, plan)

    def _completion_predictions(self, plan, batch_size, library_size, progress: bool = False):
        """Yield ``(target, donor positions in the plan, predictions)`` from the imputation loop.

        Accepts both forms of the loop's minibatches: one ``{target: (positions, predictions)}``
        dict per minibatch, or one ``(target, positions, predictions)`` tuple per minibatch and target.
        """
        for item in self._predictions(plan, batch_size, library_size, progress=progress):
            if isinstance(item, dict):
                for t, (donor_pos, pred) in item.items():
                    yield t, donor_pos, pred
            else:
                yield item

    def _check_completion_library(self, library_size) -> None:
        self._check_library_size(library_size)
        if isinstance(library_size, str) and library_size == "observed":
            raise ValueError(
                "library_size='observed' needs the target's own sample, which imputed rows lack; "
                "use 'latent' or a number."
            )

    def _target_obs_rows(self, plan, include: np.ndarray):
        return plan.mdata.obs.loc[plan.donor_names[include], donor_columns(plan.mdata.obs)].copy()

    def get_completed_cohort(
        self,
        mdata: MuData | None = None,
        tissues: str | Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        batch_size: int | None = None,
        library_size: str | float = "latent",
    ) -> AnnData | MuData:
        """Return every donor in each chosen tissue: observed samples as registered, missing ones imputed.

        A donor who gave the tissue keeps its registered sample (the registered layer, restricted to
        the model's genes); a donor who did not is predicted from all of the donor's tissues (those
        in ``source_tissues``), exactly as :meth:`get_imputed_expression` with ``missing_only=True,
        exclude_target=False`` predicts it. Donors with no usable source tissue are left out, with
        a warning that names them. For cohorts larger than memory see
        :meth:`write_completed_cohort`.

        Parameters
        ----------
        mdata
            Data to complete; ``None`` uses the registered MuData.
        tissues
            One tissue (returns an AnnData) or several (returns a MuData); ``None`` means all.
        source_tissues
            Tissues the imputations may use; ``None`` means all (e.g. restrict to the tissues where
            the model validates well).
        donors
            Donor names (default: every donor of ``mdata``), in output order.
        batch_size
            Donors per minibatch.
        library_size
            As in :meth:`get_imputed_expression` (count likelihoods only).

        Returns
        -------
        One AnnData per tissue, rows = donors in ``mdata.obs_names`` (or ``donors``) order, var =
        the model's genes:

        - ``X``: the registered expression (observed rows) or the predicted mean (imputed rows);
        - ``layers["sd"]``: the predictive standard deviation of imputed rows and ``0`` for
          observed rows (measured, not imputed);
        - ``obs["imputed"]``: whether the row is imputed, plus the donor-level columns of
          ``mdata.obs`` and, for count likelihoods, ``obs["library_size"]`` (observed rows: the
          sample's total counts);
        - ``uns["hyfa"]``: the tissues used as sources and ``"completed": True``.

        Examples
        --------
        >>> cohort = model.get_completed_cohort(tissues="Lung")  # doctest: +SKIP
        >>> cohort.obs["imputed"].mean()  # fraction of imputed donors  # doctest: +SKIP
        """
        single = isinstance(tissues, str)
        self._check_completion_library(library_size)
        comp = self._completion(mdata, tissues, source_tissues, donors)
        plan, n_genes = comp.plan, len(self.genes)
        X, sd, library = {}, {}, {}
        for t in plan.targets:
            n = int(comp.include[t].sum())
            X[t], sd[t], library[t] = (
                np.empty((n, n_genes), np.float32),
                np.zeros((n, n_genes), np.float32),
                None,
            )
            out_rows, sample_rows = comp.observed_rows(t)
            if len(out_rows):
                X[t][out_rows] = comp.blocks.values(t, sample_rows)
            if self.module.counts:
                library[t] = np.zeros(n, np.float32)
                library[t][out_rows] = X[t][out_rows].sum(axis=1)
        for t, donor_pos, pred in self._completion_predictions(plan, batch_size, library_size):
            rows = comp.position[t][donor_pos]
            X[t][rows], sd[t][rows] = pred["mean"], pred["sd"]
            if "library" in pred:
                library[t][rows] = pred["library"]
        adatas = {}
        for t in plan.targets:
            adata = AnnData(
                X=X[t], obs=comp.obs(self, t), var=self._target_var(plan, t), layers={"sd": sd[t]}
            )
            if library[t] is not None:
                adata.obs["library_size"] = library[t]
            adata.uns["hyfa"] = comp.uns(self, t)
            adatas[self.tissues[t]] = adata
        from hyfa._mudata import quiet_update  # no pull_on_update warnings; copy-on-write (fast update)

        with quiet_update():
            return adatas[self.tissues[plan.targets[0]]] if single else MuData(adatas)

    def write_completed_cohort(
        self,
        filename: str | PathLike,
        mdata: MuData | None = None,
        tissues: str | Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        batch_size: int | None = None,
        library_size: str | float = "latent",
        overwrite: bool = False,
        progress_bar: bool = True,
    ) -> None:
        """Write the completed cohort to an ``.h5mu`` file, without holding it in memory.

        Writes what :meth:`get_completed_cohort` returns, one modality per tissue: observed rows are
        copied from the registered data block by block, imputed rows filled minibatch by minibatch
        (the writer of :meth:`write_imputed_expression`: a temporary file renamed when complete).
        Read it back with :func:`mudata.read_h5mu` (``backed=True`` for lazy access) or one tissue
        at a time with ``mudata.read_h5ad(filename, tissue)``.

        Parameters
        ----------
        filename
            Output ``.h5mu`` file.
        mdata, tissues, source_tissues, donors, batch_size, library_size
            As in :meth:`get_completed_cohort`.
        overwrite
            Replace an existing file; otherwise an existing file is an error.
        progress_bar
            Show a progress bar over minibatches.
        """
        self._check_completion_library(library_size)
        writer = ImputedWriter(filename, overwrite=overwrite)  # checks the path before any work
        comp = self._completion(mdata, tissues, source_tissues, donors)
        plan = comp.plan
        names = {t: self.tissues[t] for t in plan.targets}
        with writer:
            writer.create(
                {
                    names[t]: (comp.obs(self, t), self._target_var(plan, t), comp.uns(self, t))
                    for t in plan.targets
                },
                library=self.module.counts,
            )
            for t in plan.targets:
                out_rows, sample_rows = comp.observed_rows(t)
                for start in range(0, len(out_rows), _OBSERVED_CHUNK):
                    part = slice(start, start + _OBSERVED_CHUNK)
                    values = comp.blocks.values(t, sample_rows[part])
                    block = {"mean": values, "sd": np.zeros_like(values)}
                    if self.module.counts:
                        block["library"] = values.sum(axis=1)
                    writer.write(names[t], out_rows[part], block)
            for t, donor_pos, pred in self._completion_predictions(
                plan, batch_size, library_size, progress=progress_bar
            ):
                writer.write(names[t], comp.position[t][donor_pos], pred)
        logger.info("Wrote %d completed tissues to %s.", len(plan.targets), filename)
