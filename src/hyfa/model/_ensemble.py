"""The cross-fitting copies kept as an ensemble: their weights, their modules, and the average of their predictions.

Cross-fitted calibration (:meth:`~hyfa.HYFA.calibrate` with ``n_folds``) trains one copy of the
model per fold of the training donors. With ``ensemble=True`` their weights are kept in
``fold_models_`` (saved and loaded with the model); a Gaussian prediction is then the average of
the model's and the copies' predictions, each calibrated with the model's weights. Averaging
models trained on different donors cancels much of what each learned from its own few donors
(``benchmarks/small_cohort.py``).
"""

from __future__ import annotations

import copy

import torch


def combine(predictions: list[dict[str, torch.Tensor | None]]) -> dict[str, torch.Tensor | None]:
    """Return the equal-weight mixture of Gaussian predictions: mean of the means, the mixture's sd.

    Each prediction holds ``"mean"`` and ``"sd"`` ``(n_targets, n_genes)``; ``"offset"`` (the
    gene-level skip's part), where present, is averaged too, and ``"observed"`` taken from the
    first. A single prediction is returned as is. The variance is the members' mean variance plus
    the variance of their means (the law of total variance).
    """
    if len(predictions) == 1:
        return predictions[0]
    means = torch.stack([p["mean"] for p in predictions])
    variance = (torch.stack([p["sd"] for p in predictions]) ** 2).mean(dim=0) + means.var(
        dim=0, unbiased=False
    )
    out = dict(predictions[0])
    out["mean"], out["sd"] = means.mean(dim=0), variance.sqrt()
    if predictions[0].get("offset") is not None:
        out["offset"] = torch.stack([p["offset"] for p in predictions]).mean(dim=0)
    return out


def on_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return a module's ``state`` dict with every tensor detached and on the CPU."""
    return {k: v.detach().cpu() for k, v in state.items()}


class EnsembleMixin:
    """The ensemble of :class:`~hyfa.HYFA`'s cross-fitting copies (``fold_models_``), used by its predictions."""

    def _forget_calibration(self) -> None:
        """Reset the calibration to the identity and drop a kept ensemble (both belong to a past training)."""
        self.module.calibration.reset()
        self._set_ensemble(None)

    def _set_ensemble(self, states: list[dict[str, torch.Tensor]] | None) -> None:
        """Keep the copies' state dicts ``states`` (``None``: none) as the ensemble, on the CPU; free built members."""
        self.fold_models_ = [on_cpu(state) for state in states] if states else None
        self._fold_modules = None

    @property
    def n_ensemble(self) -> int:
        """Number of models whose Gaussian predictions are averaged (1 without a kept cross-fitting ensemble)."""
        return 1 + len(getattr(self, "fold_models_", None) or ())

    def _ensemble_modules(self) -> list[torch.nn.Module]:
        """Return the modules whose predictions are averaged: this model's, then the kept copies'.

        The copies' modules are built from ``fold_models_`` on the model's device once (again when
        either changes), and get the model's current calibration at every call.
        """
        states = getattr(self, "fold_models_", None)
        if not states or self.module.counts:
            self._fold_modules = None  # e.g. after ``fold_models_ = None``: free the built members
            return [self.module]
        if any(v.device.type != "cpu" for v in states[0].values()):  # loaded to a GPU by ``load``
            self._set_ensemble(states)
            states = self.fold_models_
        cached = getattr(self, "_fold_modules", None)
        key = (list(map(id, states)), self.module.device)
        if cached is None or cached[0] != key:
            members = []
            with torch.inference_mode(False), torch.no_grad():  # plain tensors, whatever the caller's mode
                for state in states:
                    member = copy.deepcopy(self.module)
                    member.load_state_dict(state)
                    members.append(member)
            self._fold_modules = cached = (key, members)
        calibration = self.module.calibration.state_dict()
        for member in cached[1]:
            member.calibration.load_state_dict(calibration)
        return [self.module, *cached[1]]
