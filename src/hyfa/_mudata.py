"""Building MuData of many tissues quickly and quietly: shared by hyfa.data, hyfa.pp and the model."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping

import mudata
import pandas as pd
from anndata import AnnData
from mudata import MuData


def _no_pull():
    """Return a context in which ``MuData.update()`` does not copy modality columns into the global tables.

    mudata 0.3 copies every modality's ``.obs`` columns into ``mdata.obs`` (as ``"tissue:column"``) on
    update unless ``pull_on_update=False``; later versions no longer do, and may drop the option.
    """
    try:
        return mudata.set_options(pull_on_update=False)
    except ValueError:  # pragma: no cover - mudata without the option already behaves this way
        return contextlib.nullcontext()


@contextlib.contextmanager
def quiet_mudata():
    """Return a context that only silences mudata's warnings about hyfa's MuData (e.g. reading one back).

    mudata 0.3 warns on every ``MuData(...)`` that ``pull_on_update``'s default will change; every
    tissue measures the same genes, so the global ``var_names`` repeat by design. Nothing else changes.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"var_names (are|is) not unique", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"Cannot join columns", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*pull_on_update.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*copy_on_write.*", category=Warning)
        yield


@contextlib.contextmanager
def quiet_update():
    """Return a context for building MuData of many tissues without pulled columns, warnings or waste.

    mudata's ``update()`` records each modality's positions by slicing a donors (or genes) x
    modalities table column by column; without pandas copy-on-write every slice keeps a copy of
    the remaining table alive, which costs memory quadratic in the number of tissues (about 18 GB
    for 56,200 genes in 54 tissues) and time (42 s for 49 tissues x 12,557 genes, 3.5 s with it).
    Copy-on-write turns these slices into views. Modalities' ``obs`` columns are not pulled into
    the global ``obs`` (:func:`quiet_mudata` alone leaves mudata's behaviour as it is).
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(_no_pull())
        with contextlib.suppress(KeyError, ValueError):  # pandas without the option (always copy-on-write)
            stack.enter_context(pd.option_context("mode.copy_on_write", True))
        stack.enter_context(quiet_mudata())
        yield


def build_mudata(mods: Mapping[str, AnnData], obs: pd.DataFrame, uns: dict | None = None) -> MuData:
    """Return a MuData of ``mods`` with global ``.obs`` equal to ``obs`` (its rows in its order).

    Parameters
    ----------
    mods
        One AnnData per tissue, donors as ``obs_names``; every donor must be a row of ``obs``.
    obs
        Donor-level table; its index is the union of the modalities' donors, in the wanted order.
    uns
        Unstructured annotations for the MuData.
    """
    donors = pd.Index(obs.index)
    for name, adata in mods.items():
        missing = adata.obs_names.difference(donors)
        if len(missing):  # pragma: no cover - internal invariant
            raise AssertionError(
                f"Modality {name!r} has donors absent from the global obs: {list(missing[:5])}."
            )
    with quiet_update():
        mdata = MuData(dict(mods), obs=pd.DataFrame(index=donors))
        mdata.update()
    if not mdata.obs_names.equals(donors):  # pragma: no cover - mudata changed how it orders donors
        raise AssertionError("MuData did not keep the requested donor order.")
    # Columns are set afterwards: mudata's update() would turn e.g. float columns with NaN into Int64.
    for column in obs.columns:
        mdata.obs[column] = obs[column].values
    if uns:
        mdata.uns.update(uns)
    return mdata


def copy_mudata(mdata: MuData) -> MuData:
    """Return a full copy of ``mdata`` that keeps its donor order and its global ``.obs`` columns as they are."""
    with quiet_update():
        return mdata.copy()
