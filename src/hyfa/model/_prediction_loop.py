"""Which donors a prediction covers, from which sources, and the minibatch loop that predicts them.

The data path: the registered donors are read in minibatches; for every target tissue each donor's
source set is its allowed, observed tissues (without the target when ``exclude_target``). Each
minibatch's distinct source sets go through message passing once, every source sample through the
metagene encoder once (:meth:`~hyfa.module.HYFAModule.embed_source_sets`); the module's
:meth:`~hyfa.module.HYFAModule.predict` decodes each (donor, target) pair.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from mudata import MuData
from scvi import settings
from scvi.utils import track

from hyfa._constants import REGISTRY_KEYS
from hyfa._utils import as_list

from ._ensemble import EnsembleMixin, combine
from ._registration import _preview
from ._validation import tissue_positions


@dataclass
class _Plan:
    """Which donors are predicted in which target tissue, and from which source tissues."""

    mdata: MuData
    indices: np.ndarray  # rows of mdata.obs_names
    donor_names: pd.Index
    observed: np.ndarray  # (n_donors, n_tissues) bool
    targets: list[int]
    sources: dict[int, np.ndarray]  # target -> (n_donors, n_tissues) bool source sets
    keep: dict[int, np.ndarray]  # target -> (n_donors,) bool: donors predicted
    exclude_target: bool

    def position(self, t: int) -> np.ndarray:
        """Return each donor's output row in target ``t`` (-1 where not predicted)."""
        return np.where(self.keep[t], np.cumsum(self.keep[t]) - 1, -1)

    def used_sources(self, t: int) -> np.ndarray:
        """Return the tissues used as sources for target ``t`` by at least one predicted donor."""
        return np.flatnonzero(self.sources[t][self.keep[t]].any(axis=0))


class PredictionLoopMixin(EnsembleMixin):
    """Planning and the prediction loop shared by imputation, calibration and the writers of :class:`~hyfa.HYFA`."""

    # -- planning ---------------------------------------------------------------------------------
    def _tissue_positions(self, names: Sequence[str], what: str) -> list[int]:
        return tissue_positions(names, self.tissues, what)

    def _tissue_argument(self, names, what: str) -> list[str]:
        """Return ``names`` as a list: ``None`` means every tissue, an empty list is refused."""
        if names is None:
            return list(self.tissues)
        names = as_list(names)
        if not names:
            raise ValueError(f"{what} is empty; pass None for every tissue, or at least one tissue.")
        return names

    def _plan(
        self, mdata, donors, source_tissues, target_tissues, exclude_target: bool, missing_only: bool = False
    ) -> _Plan:
        """Check the arguments and return the prediction plan, warning about donors that are skipped."""
        mdata = self._validate_anndata(mdata)
        manager = self.get_anndata_manager(mdata, required=True)
        indices = np.arange(mdata.n_obs) if donors is None else self._donor_indices(mdata, donors)
        donor_names = mdata.obs_names[indices]
        observed = np.asarray(manager.get_from_registry(REGISTRY_KEYS.OBSERVED_KEY))[indices] > 0
        source_names = self._tissue_argument(source_tissues, "source_tissues")
        source_idx = self._tissue_positions(source_names, "source tissues")
        targets = self._tissue_positions(
            self._tissue_argument(target_tissues, "target_tissues"), "target tissues"
        )
        allowed = np.zeros(len(self.tissues), dtype=bool)
        allowed[source_idx] = True
        sources, keep, lacking = {}, {}, {}
        for t in targets:
            mask = observed & allowed[None, :]
            if exclude_target:
                mask[:, t] = False
            sources[t] = mask
            keep[t] = mask.any(axis=1)
            if missing_only:
                keep[t] &= ~observed[:, t]
            without = np.flatnonzero(~mask.any(axis=1) & ~(missing_only & observed[:, t]))
            if len(without):
                lacking[self.tissues[t]] = donor_names[without]
        if lacking and not any(k.any() for k in keep.values()):
            raise ValueError(
                f"No donor has any of the source tissues {_preview(source_names, 60)} for the targets "
                f"{_preview(list(lacking), 60)} (exclude_target={exclude_target})."
            )
        if lacking:
            skipped = pd.Index(np.concatenate([np.asarray(v) for v in lacking.values()])).unique()
            warnings.warn(
                f"Skipping {len(skipped)} donors that have none of the source tissues "
                f"{_preview(source_names, 8)} for some targets (exclude_target={exclude_target}): "
                f"{_preview(skipped)}; targets affected: {_preview(list(lacking))}. Their rows are left out "
                "of those targets' output.",
                UserWarning,
                stacklevel=3,
            )
        return _Plan(mdata, indices, donor_names, observed, targets, sources, keep, exclude_target)

    # -- the prediction loop ------------------------------------------------------------------------
    def _batches(self, mdata: MuData, indices: np.ndarray, batch_size: int | None, progress: bool = False):
        """Yield ``(slice, tensors)`` minibatches of donors ``indices``, in order."""
        loader = self._make_data_loader(adata=mdata, indices=indices, batch_size=batch_size, shuffle=False)
        batches = (
            track(loader, description="Imputing", style=settings.progress_bar_style) if progress else loader
        )
        start = 0
        for tensors in batches:
            n = tensors[REGISTRY_KEYS.X_KEY].shape[0]
            yield slice(start, start + n), tensors
            start += n

    def _library(self, x: torch.Tensor, rows: torch.Tensor, t: int, library_size) -> torch.Tensor | None:
        """Return the library sizes of the predictions of tissue ``t`` for donor rows ``rows`` (``None``: predicted)."""
        if library_size == "latent" or not self.module.counts:
            return None
        if library_size == "observed":
            return self.module.samples(x, rows, torch.full_like(rows, t)).sum(dim=-1)
        return torch.full((len(rows),), float(library_size), device=x.device)

    @torch.inference_mode()
    def _predictions(
        self,
        plan: _Plan,
        batch_size: int | None,
        library_size="latent",
        n_samples: int = 0,
        progress=False,
        parts: bool = False,
    ) -> Iterator[tuple[int, np.ndarray, dict[str, np.ndarray]]]:
        """Yield ``(target, donor positions in the plan, module.predict outputs)`` per minibatch and target.

        With ``parts``, the outputs add the gene-level skip's ``"offset"`` (or ``None``) and the
        targets' registered ``"observed"`` expression. With a kept cross-fitting ensemble
        (``fold_models_``), the outputs are the mixture of its modules' (``combine``), and
        draws come from a normal with the mixture's mean and sd.
        """
        modules = self._ensemble_modules()  # this model, and the kept cross-fitting copies (an ensemble)
        for module in modules:
            module.eval()
        device = self.module.device
        draws = n_samples if len(modules) == 1 else 0  # an ensemble draws from its mixture's moments
        for rows, tensors in self._batches(plan.mdata, plan.indices, batch_size, progress):
            x = tensors[REGISTRY_KEYS.X_KEY].to(device)
            covs = {
                name: tensors[key].to(device) if key in tensors else None
                for name, key in (
                    ("cat_covs", REGISTRY_KEYS.CAT_COVS_KEY),
                    ("cont_covs", REGISTRY_KEYS.CONT_COVS_KEY),
                )
            }
            local = {t: np.flatnonzero(plan.keep[t][rows]) for t in plan.targets}
            sets = np.concatenate(
                [np.column_stack([local[t], plan.sources[t][rows][local[t]]]) for t in plan.targets]
            ).astype(np.int64)
            if not len(sets):
                continue
            unique, inverse = np.unique(sets, axis=0, return_inverse=True)
            inverse = torch.as_tensor(inverse.ravel(), device=device)
            set_rows = torch.as_tensor(unique[:, 0], device=device)
            set_sources = torch.as_tensor(unique[:, 1:].astype(bool), device=device)
            embedded = [  # per module: donor embeddings, and standardized values read by every target
                (module.embed_source_sets(x, set_rows, set_sources, **covs), module.skip_values(x))
                for module in modules
            ]
            offset = 0
            for t in plan.targets:
                n = len(local[t])
                if n == 0:
                    continue
                donor_rows = torch.as_tensor(local[t], device=device)
                tissue_index = torch.full((n,), t, device=device)
                source_mask = torch.as_tensor(plan.sources[t][rows][local[t]], device=device)
                library = self._library(x, donor_rows, t, library_size)
                preds = []
                for module, (h, values) in zip(modules, embedded, strict=True):
                    gene_offset = module.gene_offset(x, donor_rows, source_mask, tissue_index, values)
                    pred = module.predict(
                        h[inverse[offset : offset + n]],
                        tissue_index,
                        library=library,
                        n_samples=draws,
                        gene_offset=gene_offset,
                    )
                    if parts:
                        pred["offset"] = gene_offset
                    preds.append(pred)
                pred = combine(preds)
                if n_samples and len(modules) > 1:
                    pred["samples"] = torch.distributions.Normal(pred["mean"], pred["sd"]).sample(
                        (n_samples,)
                    )
                if parts:
                    pred["observed"] = self.module.samples(x, donor_rows, tissue_index)
                offset += n
                yield (
                    t,
                    local[t] + rows.start,
                    {k: None if v is None else v.float().cpu().numpy() for k, v in pred.items()},
                )
