"""Fitting a :class:`~hyfa.module.CellTypeSignatureModule`: checks of observed signatures, scvi-tools training."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField, NumericalObsField
from scvi.dataloaders import DataSplitter
from scvi.train import TrainingPlan, TrainRunner

from hyfa._utils import as_list as _as_list
from hyfa.module import SIGNATURE_KEYS, CellTypeSignatureModule

from ._registration import _preview


def counts_matrix(adata: AnnData, layer: str | None) -> sparse.csr_matrix:
    """Return ``adata``'s counts as float32 CSR, raising on negative or non-integer values."""
    matrix = adata.X if layer is None else adata.layers[layer]
    matrix = sparse.csr_matrix(matrix, dtype=np.float32)
    where = "X" if layer is None else f"layer {layer!r}"
    for problem, bad in (
        ("negative", matrix.data < 0),
        ("non-integer", matrix.data != np.round(matrix.data)),
        ("NaN or infinite", ~np.isfinite(matrix.data)),
    ):
        if bad.any():
            rows = np.searchsorted(matrix.indptr, np.flatnonzero(bad), side="right") - 1
            raise ValueError(
                f"Signatures ({where}) must be raw counts, but {bad.sum()} values are {problem}, e.g. in "
                f"signatures {_preview(adata.obs_names[np.unique(rows)], 5)}."
            )
    return matrix


def positive_column(obs: pd.DataFrame, key: str) -> np.ndarray:
    """Return column ``key`` of ``obs`` as float32, raising unless every value is a positive number."""
    if key not in obs.columns:
        raise KeyError(f"{key!r} is not a column of signatures.obs.")
    values = pd.to_numeric(obs[key], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        raise ValueError(
            f"signatures.obs[{key!r}] must be positive numbers; not so for {_preview(obs.index[bad], 5)}."
        )
    return values.astype(np.float32)


class _TrainingRun:
    """The model-side state that :class:`scvi.train.TrainRunner` reads and writes during one fit.

    TrainRunner drives a model, not a module: it keeps the training history in ``history_``
    (appending when ``is_trained_``), sets ``is_trained_``, ``trainer`` and the
    ``train/validation/test_indices`` after a successful fit, moves the model with ``to_device``,
    reads ``adata`` (early-stopping checks) and ``run_name`` (MLflow), and hands the object to
    the trainer for checkpoint callbacks. The signature module has no model class of its own
    (its user API is on :class:`~hyfa.HYFA`), so this object holds that state for one fit and
    nothing else; HYFA keeps only the history.
    """

    def __init__(self, module: CellTypeSignatureModule, adata: AnnData):
        self.module = module
        self.adata = adata
        self.history_ = None
        self.is_trained_ = False
        self.run_name = "hyfa_cell_type_signatures"

    def to_device(self, device) -> None:
        """Move the module to ``device``."""
        self.module.to(device)


def fit(
    module: CellTypeSignatureModule,
    adata: AnnData,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    batch_size: int,
    plan_kwargs: dict,
    **runner_kwargs,
) -> dict:
    """Return the training history of ``module`` fitted to the signatures ``adata``.

    ``adata`` holds counts in ``X`` and the columns :data:`~hyfa.module.SIGNATURE_KEYS` in
    ``obs``; ``train_rows`` and ``val_rows`` are its row positions, the rest form the test set.
    Inside :meth:`~hyfa.module.CellTypeSignatureModule.training_scope`: the bulk module leaves
    as it came, also when training raises.
    """
    manager = AnnDataManager(
        fields=[
            LayerField(SIGNATURE_KEYS.X_KEY, None, is_count_data=True),
            *(
                NumericalObsField(key, key)
                for key in SIGNATURE_KEYS[1:]  # donor, tissue, cell type codes, n_cells, library
            ),
        ]
    )
    manager.register_fields(adata)
    test_rows = np.setdiff1d(np.arange(adata.n_obs), np.concatenate([train_rows, val_rows]))
    splitter = DataSplitter(
        manager,
        external_indexing=[train_rows, val_rows, test_rows],
        batch_size=batch_size,
        drop_last=len(train_rows) % batch_size == 1,
    )
    if len(val_rows):
        runner_kwargs.setdefault("check_val_every_n_epoch", 1)
    run = _TrainingRun(module, adata)
    from hyfa._quiet import log_every_n_steps, quiet_training  # hyfa/_quiet.py (#16)

    runner_kwargs.setdefault(
        "log_every_n_steps", log_every_n_steps(len(train_rows), batch_size, runner_kwargs.get("devices"))
    )
    with module.training_scope(), quiet_training():  # the frozen bulk module is in eval mode on purpose
        plan = TrainingPlan(module, **plan_kwargs)
        TrainRunner(run, training_plan=plan, data_splitter=splitter, **runner_kwargs)()
    return run.history_


def signature_split(row_donors: np.ndarray, train_donors, validation_donors) -> tuple[np.ndarray, np.ndarray]:
    """Return row positions of training and validation signatures, split by donor name."""
    known = set(row_donors)
    for what, names in (("training", train_donors), ("validation", validation_donors)):
        unknown = sorted(set(_as_list(names) or []) - known)
        if unknown:
            raise ValueError(f"{what.capitalize()} donors {_preview(unknown)} have no signatures.")
    val = set(_as_list(validation_donors) or [])
    train = set(_as_list(train_donors)) if train_donors is not None else known - val
    overlap = sorted(train & val)
    if overlap:
        raise ValueError(f"Donors both in training and validation: {_preview(overlap)}.")
    if not train:
        raise ValueError("No training donors have signatures.")
    return (
        np.flatnonzero(np.isin(row_donors, sorted(train))),
        np.flatnonzero(np.isin(row_donors, sorted(val))),
    )
