"""What :mod:`hyfa.tl` reads from a model, through public accessors only.

The evaluation takes a trained :class:`~hyfa.HYFA` or any object with its
``get_imputed_expression`` method, so every read falls back to ``None`` when the object does not offer
it. Only documented scvi-tools API is used (:attr:`~scvi.model.base.BaseModelClass.adata`,
:meth:`~scvi.model.base.BaseModelClass.get_setup_arg` and the ``train_indices`` / ``test_indices``
properties) plus HYFA's ``tissues`` and ``genes``; no registry layout is read here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mudata import MuData


def _model_data(model: Any) -> MuData | None:
    """Return the data the model was set up with (``model.adata``), or ``None``."""
    return getattr(model, "adata", None)


def _model_tissues(model: Any) -> list[str] | None:
    """Return the tissues the model knows (``model.tissues``), or ``None``."""
    tissues = getattr(model, "tissues", None)
    return None if tissues is None else list(tissues)


def _model_genes(model: Any) -> list[str] | None:
    """Return the genes the model predicts (``model.genes``), or ``None``."""
    genes = getattr(model, "genes", None)
    return None if genes is None else list(genes)


def _setup_arg(model: Any, key: str) -> Any:
    """Return a setup argument the model was registered with (e.g. ``"layer"``), or ``None``."""
    get_setup_arg = getattr(model, "get_setup_arg", None)
    if get_setup_arg is None:
        return None
    try:
        return get_setup_arg(key)
    except (AttributeError, KeyError, TypeError):  # not registered with this argument
        return None


def _split_donors(model: Any, split: str) -> list[str] | None:
    """Return the names of the model's ``"train"``, ``"validation"`` or ``"test"`` donors, or ``None``."""
    indices = getattr(model, f"{split}_indices", None)
    adata = _model_data(model)
    if indices is None or adata is None or len(indices) == 0:
        return None
    return list(adata.obs_names[np.asarray(indices)])
