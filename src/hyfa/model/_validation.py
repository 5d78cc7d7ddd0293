"""Checks of user input shared by registration, training, transfer to new data and loading.

Every check raises before any work starts and names what is at fault (the tissue, donor, gene,
key, file or argument); none changes the data it checks. ``docs/robustness.md`` lists them.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd

from hyfa._checks import preview

#: Characters a tissue name may not hold: ``/`` separates groups in the ``.h5mu`` / HDF5 files a model and its data are saved to.
FORBIDDEN_TISSUE_CHARACTERS = ("/",)

#: Labels of ``train(split_key=...)``, after stripping spaces and lower-casing.
TRAIN_LABELS = ("train",)
VALIDATION_LABELS = ("val", "validation")
TEST_LABELS = ("test",)


def _preview(items: Sequence, n: int = 10) -> str:
    """Return the first ``n`` of ``items``, unquoted, and how many there are (:func:`hyfa._checks.preview`)."""
    return preview(items, n, quote=False)


# -- arguments -----------------------------------------------------------------------------------
def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an int, raising unless it is a whole number >= 1 (booleans refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral | Real) or value != value:
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if not isinstance(value, Integral) and not float(value).is_integer():
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_positive_number(value, name: str) -> float:
    """Return ``value`` as a float, raising unless it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a positive number, got {value!r}.")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def check_fraction(value, name: str) -> float | None:
    """Return ``value`` (``None`` allowed), raising unless it lies in ``[0, 1]``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not (0 <= value <= 1):
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}.")
    return float(value)


# -- tissues and donors --------------------------------------------------------------------------
def check_tissue_names(tissues: Sequence[str]) -> None:
    """Raise if a tissue name cannot be saved and loaded (it holds ``/``) or is not a non-empty string."""
    for tissue in tissues:
        if not isinstance(tissue, str) or not tissue:
            raise ValueError(f"Tissue names must be non-empty strings, got {tissue!r}.")
        bad = [c for c in FORBIDDEN_TISSUE_CHARACTERS if c in tissue]
        if bad:
            raise ValueError(
                f"Tissue name {tissue!r} holds {' '.join(map(repr, bad))}, which .h5mu files (and so saved models) "
                f"cannot store; rename the modality, e.g. mdata.mod[{tissue.replace('/', '_')!r}] = "
                f"mdata.mod.pop({tissue!r}), then mdata.update()."
            )


def check_donor_names(mdata, tissues: Sequence[str]) -> None:
    """Raise if donors are duplicated in ``mdata.obs_names`` or in a tissue, or a tissue's donor is not in ``mdata.obs_names``.

    Tissues of ``tissues`` that ``mdata`` does not hold are skipped.
    """
    names = mdata.obs_names
    if names.has_duplicates:
        raise ValueError(
            f"mdata.obs_names lists donors more than once: {_preview(names[names.duplicated()].unique())}. "
            "Donors are matched across tissues by name; make them unique."
        )
    for tissue in tissues:
        if tissue not in mdata.mod:
            continue
        obs_names = mdata.mod[tissue].obs_names
        if obs_names.has_duplicates:
            raise ValueError(
                f"Tissue {tissue!r} lists donors more than once: {_preview(obs_names[obs_names.duplicated()].unique())}."
            )
        missing = obs_names.difference(names)
        if len(missing):
            raise ValueError(
                f"Tissue {tissue!r} has donors missing from mdata.obs_names: {_preview(missing)}. "
                "Call mdata.update() after changing modalities."
            )


def check_boolean_mask(column: pd.Series, what: str) -> np.ndarray:
    """Return a boolean ``var`` column as a numpy bool array: numpy bool, or pandas' nullable ``boolean`` without NA."""
    if column.dtype == bool:
        return column.to_numpy()
    if isinstance(column.dtype, pd.BooleanDtype):
        missing = column.index[column.isna().to_numpy()]
        if len(missing):
            raise ValueError(
                f"{what} is missing (NA) for genes {_preview(missing)}; fill it with True or False."
            )
        return column.to_numpy(dtype=bool)
    raise ValueError(f"{what} must be boolean (True / False per gene), got dtype {column.dtype}.")


# -- covariates ----------------------------------------------------------------------------------
def check_covariates(
    mdata, keys: Sequence[str] | None, kind: str, categories: dict[str, Sequence] | None = None
) -> None:
    """Raise if donor covariates are absent, missing for some donors, non-numeric / infinite (continuous) or unknown (categorical).

    Parameters
    ----------
    mdata
        MuData whose ``obs`` holds the covariates.
    keys
        Columns of ``mdata.obs``.
    kind
        ``"categorical"`` or ``"continuous"``.
    categories
        Categorical covariates of a trained model: the registered categories of each key; a
        value outside them is refused.
    """
    for key in keys or []:
        if key not in mdata.obs.columns:
            raise KeyError(f"{kind} covariate {key!r} is not a column of mdata.obs.")
        column = mdata.obs[key]
        missing = mdata.obs_names[pd.isna(column).to_numpy()]
        if len(missing):
            raise ValueError(
                f"{kind} covariate {key!r} is missing for donors {_preview(missing)} (NaN / None); every donor "
                "needs a value."
            )
        if kind == "continuous":
            try:
                values = column.to_numpy(dtype=float)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"Continuous covariate {key!r} must be numeric: {exc}.") from None
            infinite = mdata.obs_names[~np.isfinite(values)]
            if len(infinite):
                raise ValueError(
                    f"Continuous covariate {key!r} holds infinite values for donors {_preview(infinite)}."
                )
        elif categories is not None and key in categories:
            known = pd.Index(list(categories[key]))
            values = pd.Index(np.asarray(column, dtype=object))
            unknown = values[~values.isin(known)].unique()
            if len(unknown):
                raise ValueError(
                    f"Categorical covariate {key!r} has categories the model was not trained on: "
                    f"{_preview(unknown)} (donors {_preview(mdata.obs_names[~values.isin(known)])}); "
                    f"known categories: {_preview(known, 30)}."
                )


# -- training ------------------------------------------------------------------------------------
def split_labels(column: pd.Series, split_key: str, donors: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Return the positions of training and validation donors of a split column.

    Labels are compared after stripping spaces and lower-casing: ``"train"``; ``"val"`` or
    ``"validation"``; ``"test"``. Missing labels, and labels that look like misspellings of
    these (e.g. ``"valid"``, ``"tst"``), are refused; any other label (e.g. ``"unassigned"``)
    holds its donors out, like ``"test"``, with a warning.
    """
    missing = donors[pd.isna(column).to_numpy()]
    if len(missing):
        raise ValueError(f"mdata.obs[{split_key!r}] is missing (NaN) for donors {_preview(missing)}.")
    raw = pd.Series(np.asarray(column, dtype=object).astype(str), index=donors)
    labels = raw.str.strip().str.lower()
    accepted = (*TRAIN_LABELS, *VALIDATION_LABELS, *TEST_LABELS)
    other = sorted(set(labels) - set(accepted))
    near = {raw[labels == o].iloc[0]: difflib.get_close_matches(o, accepted, n=1, cutoff=0.6) for o in other}
    near = {label: match[0] for label, match in near.items() if match}
    if near:
        raise ValueError(
            f"mdata.obs[{split_key!r}] has labels {_preview([repr(k) for k in near])} that look like "
            f"{_preview([repr(v) for v in near.values()])}; accepted labels are {', '.join(map(repr, accepted))} "
            "(case and surrounding spaces ignored). Relabel them."
        )
    if other:
        counts = labels[labels.isin(other)].value_counts()
        warnings.warn(
            f"mdata.obs[{split_key!r}] labels {_preview([f'{k!r} ({v} donors)' for k, v in counts.items()])} are "
            f"none of {', '.join(map(repr, accepted))}: those donors are held out, like 'test'.",
            UserWarning,
            stacklevel=4,
        )
    train = np.flatnonzero(labels.isin(TRAIN_LABELS).to_numpy())
    val = np.flatnonzero(labels.isin(VALIDATION_LABELS).to_numpy())
    if len(train) == 0:
        raise ValueError(
            f"No donor has mdata.obs[{split_key!r}] == 'train' (labels: {_preview(sorted(set(raw)))})."
        )
    return train, val


def check_training_donors(
    observed: np.ndarray, train: np.ndarray | None, validation: np.ndarray | None, donors
) -> None:
    """Raise if no training donor gave two tissues (nothing to learn from); warn if no validation donor did.

    Parameters
    ----------
    observed
        Boolean donors x tissues observation mask of the registered MuData.
    train, validation
        Positions of the training and validation donors; ``None`` for a random split (all donors).
    donors
        Donor names (``mdata.obs_names``).
    """
    n_tissues = observed.sum(axis=1)
    pool = np.arange(len(n_tissues)) if train is None else train
    if not (n_tissues[pool] >= 2).any():
        what = "donor" if train is None else "training donor"
        raise ValueError(
            f"No {what} gave two or more tissues ({len(pool)} {what}s, e.g. {_preview(donors[pool], 5)}): "
            "training hides some of a donor's tissues and predicts them from the others, so at least one "
            "donor needs two tissues. Add donors measured in several tissues."
        )
    if validation is not None and len(validation) and not (n_tissues[validation] >= 2).any():
        warnings.warn(
            f"No validation donor gave two or more tissues ({len(validation)} donors): the validation loss "
            "has no targets and stays 0.",
            UserWarning,
            stacklevel=4,
        )


# -- persistence ---------------------------------------------------------------------------------
def check_saved_model(dir_path, prefix: str | None = None) -> str:
    """Return the path of a saved model's ``model.pt``, raising if the folder or file is missing or not a torch file."""
    import zipfile

    dir_path = os.fspath(dir_path)
    if not os.path.isdir(dir_path):
        raise FileNotFoundError(f"No saved model: the folder {dir_path!r} does not exist.")
    path = os.path.join(dir_path, f"{prefix or ''}model.pt")
    if not os.path.isfile(path):
        present = sorted(os.listdir(dir_path))
        raise FileNotFoundError(
            f"No saved model file {path!r} (the folder holds {_preview(present) or 'nothing'}). "
            "Save with model.save(dir_path); pass prefix=... if it was saved with one."
        )
    if not zipfile.is_zipfile(path):
        raise ValueError(f"The saved model file {path!r} is corrupted or not a model saved by HYFA.save.")
    return path


def tissue_positions(names: Sequence[str], tissues: Sequence[str], what: str) -> list[int]:
    """Return the position of each of ``names`` among the model's ``tissues``, raising for unknown ones by name."""
    tissues = list(tissues)
    unknown = [t for t in names if t not in tissues]
    if unknown:
        raise ValueError(f"Unknown {what} {_preview(unknown)}; the model knows {_preview(tissues, 60)}.")
    return [tissues.index(t) for t in names]


def check_library_size(library_size, gene_likelihood: str) -> None:
    """Raise unless ``library_size`` is ``"latent"``, ``"observed"`` or a positive number, and fits the likelihood."""
    if isinstance(library_size, str):
        if library_size not in ("latent", "observed"):
            raise ValueError(f"library_size must be 'latent', 'observed' or a number, got {library_size!r}.")
    elif not (np.isscalar(library_size) and np.isfinite(library_size) and library_size > 0):
        raise ValueError(
            f"library_size must be 'latent', 'observed' or a positive number, got {library_size!r}."
        )
    if library_size != "latent" and gene_likelihood == "normal":
        raise ValueError(
            "library_size applies to count likelihoods ('nb', 'zinb'); this model's gene_likelihood is "
            f"{gene_likelihood!r}."
        )
