"""Streams imputed tissues into an ``.h5mu`` file minibatch by minibatch, holding none of them whole.

The file is first written as the skeleton of a MuData (its on-disk format, written with anndata's
``write_elem``: building a MuData of many tissues in memory is slow): per tissue ``obs``, ``var``,
``uns`` and empty ``X`` / ``layers["sd"]`` datasets, filled row block by row block. It is written under a temporary name and renamed when complete, so
an interrupted run never leaves a file that looks finished, and an existing file is never replaced
unless asked.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.io import write_elem

#: HDF5 attributes of a dense array in the AnnData on-disk format.
_ARRAY_ATTRS = {"encoding-type": "array", "encoding-version": "0.2.0"}


class ImputedWriter:
    """Writes imputed tissues to ``filename`` (``.h5mu``), one modality per tissue.

    Parameters
    ----------
    filename
        Output file.
    overwrite
        Replace an existing file; otherwise an existing file raises :class:`FileExistsError`.
    """

    def __init__(self, filename: str | PathLike, overwrite: bool = False):
        self.path = Path(filename)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True to replace it.")
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"The folder of {self.path} does not exist.")
        self.partial = self.path.with_name(self.path.name + ".partial")
        self._file: h5py.File | None = None

    def create(self, tissues: dict[str, tuple[pd.DataFrame, pd.DataFrame, dict]], library: bool) -> None:
        """Write the file's skeleton: per tissue, ``obs``, ``var``, ``uns`` and empty ``X`` / ``layers["sd"]``.

        Parameters
        ----------
        tissues
            ``{tissue: (obs, var, uns)}``.
        library
            Add an ``obs["library_size"]`` column (count likelihoods).
        """
        with h5py.File(self.partial, "w") as file:
            file.attrs.update({"encoding-type": "MuData", "encoding-version": "0.1.0", "encoder": "hyfa"})
            mods = file.create_group("mod")
            mods.attrs["mod-order"] = np.array(list(tissues), dtype=object)
            donors = []
            for name, (obs, var, uns) in tissues.items():
                obs = obs.copy()
                if library:
                    obs["library_size"] = np.zeros(len(obs), np.float32)
                write_elem(mods, name, AnnData(obs=obs, var=var, uns={"hyfa": uns}))
                group = mods[name]
                for parent, key in ((group, "X"), (group["layers"], "sd")):
                    if key in parent:  # an empty placeholder (AnnData without X)
                        del parent[key]
                    dataset = parent.create_dataset(key, shape=(len(obs), len(var)), dtype=np.float32)
                    dataset.attrs.update(_ARRAY_ATTRS)
                donors.append(obs.index)
            # MuData's global tables: the union of donors, and every tissue's genes in turn
            write_elem(file, "obs", pd.DataFrame(index=pd.Index(np.unique(np.concatenate(donors)))))
            write_elem(
                file, "var", pd.DataFrame(index=np.concatenate([v.index for _, v, _ in tissues.values()]))
            )
        self._file = h5py.File(self.partial, "r+")

    def write(self, tissue: str, rows: np.ndarray, predictions: dict[str, np.ndarray]) -> None:
        """Write rows ``rows`` (increasing) of ``tissue``: ``"mean"`` to ``X``, ``"sd"``, and ``"library"`` if given."""
        if not len(rows):
            return
        group = self._file["mod"][tissue]
        where = slice(int(rows[0]), int(rows[-1]) + 1) if rows[-1] - rows[0] == len(rows) - 1 else rows
        group["X"][where] = predictions["mean"]
        group["layers"]["sd"][where] = predictions["sd"]
        if "library" in predictions:
            group["obs"]["library_size"][where] = predictions["library"]

    def __enter__(self) -> ImputedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if exc_type is None:
            self.partial.replace(self.path)
        else:
            self.partial.unlink(missing_ok=True)
