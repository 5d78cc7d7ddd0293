"""Imputation and donor embeddings for :class:`~hyfa.HYFA`: minibatches of donors in, AnnData out.

Predictions come from the loop of ``_prediction_loop.py``; they are gathered in memory
(:meth:`ImputationMixin.get_imputed_expression`) or streamed to disk tissue block by block
(:meth:`ImputationMixin.write_imputed_expression`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData

from hyfa._access import donor_columns
from hyfa._constants import REGISTRY_KEYS
from hyfa._mudata import quiet_update

from ._prediction_loop import PredictionLoopMixin, _Plan
from ._registration import _preview
from ._validation import check_library_size
from ._writer import ImputedWriter

logger = logging.getLogger(__name__)


class ImputationMixin(PredictionLoopMixin):
    """Predictions of :class:`~hyfa.HYFA`: imputed expression (in memory or streamed) and embeddings."""

    def _target_obs(self, plan: _Plan, t: int) -> pd.DataFrame:
        return plan.mdata.obs.loc[plan.donor_names[plan.keep[t]], donor_columns(plan.mdata.obs)].copy()

    def _target_var(self, plan: _Plan, t: int) -> pd.DataFrame:
        name = self.tissues[t]
        if name in plan.mdata.mod:
            return plan.mdata.mod[name].var.loc[self.genes].copy()
        return pd.DataFrame(index=self.genes)

    def _target_uns(self, plan: _Plan, t: int) -> dict:
        tissues = self.tissues
        return {
            "target_tissue": tissues[t],
            "source_tissues": [tissues[k] for k in plan.used_sources(t)],
            "exclude_target": plan.exclude_target,
        }

    def _check_library_size(self, library_size) -> None:
        check_library_size(library_size, self.module.gene_likelihood)

    def _check_observed_targets(self, plan: _Plan) -> None:
        for t in plan.targets:
            lacking = np.flatnonzero(plan.keep[t] & ~plan.observed[:, t])
            if len(lacking):
                raise ValueError(
                    f"library_size='observed' needs the observed target, but {len(lacking)} donors lack "
                    f"{self.tissues[t]!r}: {_preview(plan.donor_names[lacking])}. Use library_size='latent'."
                )

    # -- public API ---------------------------------------------------------------------------------
    def get_imputed_expression(
        self,
        mdata: MuData | None = None,
        target_tissues: str | Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        exclude_target: bool = True,
        n_samples: int = 1,
        return_samples: bool = False,
        batch_size: int | None = None,
        library_size: str | float = "latent",
        missing_only: bool = False,
    ) -> AnnData | MuData | tuple[AnnData, np.ndarray] | tuple[MuData, dict[str, np.ndarray]]:
        """Return each donor's predicted expression in the target tissues.

        The donor embedding comes from the donor's source tissues: those in ``source_tissues``
        (default: all) that the donor gave, never the target itself when ``exclude_target``.
        Donors unseen in training work the same way. Donors with no usable source for a target
        (e.g. a donor who gave only that tissue) are left out of that target's output, with a
        warning that names them; the call fails only when no donor can be predicted at all.
        All targets of a minibatch share its source samples' encodings, and each distinct source
        set is embedded once; for outputs larger than memory see :meth:`write_imputed_expression`.

        Parameters
        ----------
        mdata
            Data to predict from; ``None`` uses the registered MuData. New data are registered
            against the model's tissues and genes.
        target_tissues
            One tissue (returns an AnnData) or several (returns a MuData); ``None`` means all.
        source_tissues
            Tissues the donor embedding may use; ``None`` means all.
        donors
            Donor names (default: every donor of ``mdata``).
        exclude_target
            Never use the target tissue as a source (leave-one-out for donors who gave it).
        n_samples
            Draws from the predictive distribution; with ``n_samples > 1``, ``X`` is their mean.
        return_samples
            Also return the draws, ``(n_samples, n_donors, n_genes)`` per target.
        batch_size
            Donors per minibatch.
        library_size
            Count likelihoods only. ``"latent"``: the library size the model predicts for the
            target (the median of its log-normal, or draws from it with ``n_samples > 1``);
            ``"observed"``: the target's observed total counts (every donor must have the
            target, and ``exclude_target`` still keeps it out of the sources); a number: that
            library for every donor (e.g. ``1e4`` for counts per 10,000, or ``1`` for
            proportions).
        missing_only
            Predict only the donors who did not give the target tissue.

        Returns
        -------
        One AnnData per target tissue: obs = donors (with the donor-level columns of
        ``mdata.obs``), var = genes, ``X`` = predicted mean, ``layers["sd"]`` = predictive standard
        deviation (for counts, given the library size), ``uns["hyfa"]`` = the tissues used and,
        for counts, ``obs["library_size"]`` = the library size of each prediction. With
        ``return_samples``, a tuple of that and the draws (an array, or a dict of arrays by tissue).
        """
        single = isinstance(target_tissues, str)
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        self._check_library_size(library_size)
        plan = self._plan(mdata, donors, source_tissues, target_tissues, exclude_target, missing_only)
        if library_size == "observed":
            self._check_observed_targets(plan)
        sample = return_samples or n_samples > 1
        n_genes = len(self.genes)
        position = {t: plan.position(t) for t in plan.targets}
        size = {t: int(plan.keep[t].sum()) for t in plan.targets}
        means = {t: np.empty((size[t], n_genes), np.float32) for t in plan.targets}
        sds = {t: np.empty((size[t], n_genes), np.float32) for t in plan.targets}
        libraries = {t: np.empty(size[t], np.float32) for t in plan.targets}
        draws = (
            {t: np.empty((n_samples, size[t], n_genes), np.float32) for t in plan.targets} if sample else {}
        )
        for t, donor_pos, pred in self._predictions(
            plan, batch_size, library_size, n_samples if sample else 0
        ):
            rows = position[t][donor_pos]
            means[t][rows], sds[t][rows] = pred["mean"], pred["sd"]
            if "library" in pred:
                libraries[t][rows] = pred["library"]
            if sample:
                draws[t][:, rows] = pred["samples"]
        adatas = {}
        for t in plan.targets:
            X = draws[t].mean(axis=0) if n_samples > 1 else means[t]
            adata = AnnData(
                X=X, obs=self._target_obs(plan, t), var=self._target_var(plan, t), layers={"sd": sds[t]}
            )
            if self.module.counts:
                adata.obs["library_size"] = libraries[t]
            adata.uns["hyfa"] = self._target_uns(plan, t)
            adatas[self.tissues[t]] = adata
        first = self.tissues[plan.targets[0]]
        if single:
            result = adatas[first]
        else:  # quiet_update: no pull_on_update warnings, and copy-on-write (mudata's update is slow without)
            with quiet_update():
                result = MuData(adatas)
        if not return_samples:
            return result
        samples = {self.tissues[t]: draws[t] for t in plan.targets}
        return (result, samples[first]) if single else (result, samples)

    def write_imputed_expression(
        self,
        filename: str | PathLike,
        mdata: MuData | None = None,
        target_tissues: str | Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        donors: Sequence[str] | None = None,
        exclude_target: bool = True,
        batch_size: int | None = None,
        library_size: str | float = "latent",
        missing_only: bool = False,
        overwrite: bool = False,
        progress_bar: bool = True,
    ) -> None:
        """Write the imputed expression of every target tissue to an ``.h5mu`` file, without holding it in memory.

        Takes the arguments of :meth:`get_imputed_expression` (predictive means only: no draws)
        and writes what it would return, one modality per target tissue, filling the file
        minibatch by minibatch; memory holds the registered data, the model and one minibatch's
        predictions. Read it back whole with :func:`mudata.read_h5mu`, one tissue at a time with
        ``mudata.read_h5ad(filename, tissue)``, or lazily with ``mudata.read_h5mu(filename,
        backed=True)``. With ``missing_only=True`` the file holds exactly what completes the
        cohort: every donor x tissue pair the donor did not give, each from all of the donor's
        tissues (with the default ``source_tissues``).

        Parameters
        ----------
        filename
            Output ``.h5mu`` file.
        mdata, target_tissues, source_tissues, donors, exclude_target, batch_size, library_size, missing_only
            As in :meth:`get_imputed_expression`.
        overwrite
            Replace an existing file; otherwise an existing file is an error.
        progress_bar
            Show a progress bar over minibatches (scvi-tools' ``settings.progress_bar_style``).
        """
        self._check_library_size(library_size)
        writer = ImputedWriter(filename, overwrite=overwrite)  # checks the path before any work
        plan = self._plan(mdata, donors, source_tissues, target_tissues, exclude_target, missing_only)
        if library_size == "observed":
            self._check_observed_targets(plan)
        names = {t: self.tissues[t] for t in plan.targets}
        position = {t: plan.position(t) for t in plan.targets}
        with writer:
            writer.create(
                {
                    names[t]: (
                        self._target_obs(plan, t),
                        self._target_var(plan, t),
                        self._target_uns(plan, t),
                    )
                    for t in plan.targets
                },
                library=self.module.counts,
            )
            for t, donor_pos, pred in self._predictions(
                plan, batch_size, library_size, progress=progress_bar
            ):
                writer.write(names[t], position[t][donor_pos], pred)
        logger.info("Wrote %d imputed tissues to %s.", len(plan.targets), filename)

    @torch.inference_mode()
    def get_latent_representation(
        self,
        mdata: MuData | None = None,
        kind: str = "donor",
        donors: Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Return learned embeddings.

        Parameters
        ----------
        mdata
            Data to embed donors from; ``None`` uses the registered MuData.
        kind
            ``"donor"``: ``(n_donors, n_donor_latent)`` embeddings after message passing over the
            donors' ``source_tissues`` (ready for ``adata.obsm``); ``"tissue"``: ``(n_tissues,
            n_tissue_latent)`` in :attr:`tissues` order; ``"metagene"``: ``(n_metagenes,
            n_metagene_latent)``.
        donors
            Donor names (``kind="donor"``); default every donor.
        source_tissues
            Tissues the donor embeddings may use (default all); every donor must have one.
        batch_size
            Donors per minibatch.
        """
        if kind == "tissue":
            return self.module.tissue_embedding.detach().cpu().numpy().copy()
        if kind == "metagene":
            return self.module.metagene_embedding.detach().cpu().numpy().copy()
        if kind != "donor":
            raise ValueError(f"kind must be 'donor', 'tissue' or 'metagene', got {kind!r}.")
        mdata = self._validate_anndata(mdata)
        manager = self.get_anndata_manager(mdata, required=True)
        indices = np.arange(mdata.n_obs) if donors is None else self._donor_indices(mdata, donors)
        observed = np.asarray(manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY))[indices] > 0
        source_names = self._tissue_argument(source_tissues, "source_tissues")
        allowed = np.zeros(len(self.tissues), dtype=bool)
        allowed[self._tissue_positions(source_names, "source tissues")] = True
        mask = observed & allowed[None, :]
        lacking = np.flatnonzero(~mask.any(axis=1))
        if len(lacking):
            raise ValueError(
                f"{len(lacking)} donors have none of the source tissues {_preview(source_names, 8)}: "
                f"{_preview(mdata.obs_names[indices][lacking])}. Pass donors=... or other source_tissues."
            )
        self.module.eval()
        device = self.module.device
        out = np.empty((len(indices), self.module.n_donor_latent), np.float32)
        for rows, tensors in self._batches(mdata, indices, batch_size):
            n = rows.stop - rows.start
            out[rows] = (
                self.module.embed_source_sets(
                    tensors[REGISTRY_KEYS.X_KEY].to(device),
                    torch.arange(n, device=device),
                    torch.as_tensor(mask[rows], device=device),
                    cat_covs=tensors[REGISTRY_KEYS.CAT_COVS_KEY].to(device)
                    if REGISTRY_KEYS.CAT_COVS_KEY in tensors
                    else None,
                    cont_covs=tensors[REGISTRY_KEYS.CONT_COVS_KEY].to(device)
                    if REGISTRY_KEYS.CONT_COVS_KEY in tensors
                    else None,
                )
                .cpu()
                .numpy()
            )
        return out
