"""Reading a MuData by name, shared by the model, hyfa.tl and hyfa.pl: a tissue's matrix and the donor-level columns."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData


def layer_matrix(adata: AnnData, layer: str | None, label: str):
    """Return ``adata.X`` (``layer=None``) or ``adata.layers[layer]``, raising a :class:`KeyError` naming ``label`` and the layers."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(f"Layer {layer!r} not found in {label}; available layers: {list(adata.layers)}.")
    return adata.layers[layer]


def donor_columns(obs: pd.DataFrame) -> list[str]:
    """Return the donor-level columns of a MuData's ``obs``: not ``"tissue:column"`` copies, not hyfa's ``"_..."`` keys."""
    return [c for c in obs.columns if ":" not in c and not c.startswith("_")]
