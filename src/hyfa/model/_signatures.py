"""Cell-type signatures on a trained bulk model: transfer learning and prediction :cite:p:`Vinas2023`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from anndata import AnnData
from mudata import MuData

from hyfa._constants import REGISTRY_KEYS
from hyfa._utils import as_list as _as_list
from hyfa.module import SIGNATURE_KEYS, CellTypeSignatureModule, signature_distribution
from hyfa.nn import count_variance, predicted_library

from ._registration import _preview
from ._signature_training import counts_matrix, fit, positive_column, signature_split
from ._validation import tissue_positions

logger = logging.getLogger(__name__)

#: Columns of ``signatures.obs`` by role: the ``*_key`` defaults of ``train_cell_type_signatures``.
DEFAULT_KEYS = {
    "donor": "donor",
    "tissue": "tissue",
    "cell_type": "cell_type",
    "n_cells": "n_cells",
    "library_size": "library_size",
}


class CellTypeSignatureMixin:
    """Transfer learning of cell-type signatures on a trained :class:`~hyfa.HYFA` :cite:p:`Vinas2023`."""

    def _signature_codes(self, obs: pd.DataFrame, keys: dict[str, str]) -> dict[str, np.ndarray]:
        """Return donor, tissue and cell-type codes of signature rows, raising on unknown names."""
        for key in keys.values():
            if key not in obs.columns:
                raise KeyError(f"{key!r} is not a column of signatures.obs.")
        donors = obs[keys["donor"]].astype(str).to_numpy()
        unknown = pd.Index(donors).difference(self.adata.obs_names)
        if len(unknown):
            raise ValueError(
                f"Signature donors {_preview(list(unknown))} are not donors of the model's MuData; the donor "
                "embeddings come from their bulk tissues."
            )
        tissues = obs[keys["tissue"]].astype(str).to_numpy()
        unknown = sorted(set(tissues) - set(self.tissues))
        if unknown:
            raise ValueError(f"Signature tissues {_preview(unknown)} are not tissues of the model.")
        return {
            "donor": donors,
            "tissue": np.array([self.tissues.index(t) for t in tissues]),
            "cell_type": obs[keys["cell_type"]].astype(str).to_numpy(),
        }

    def _tissue_codes(self, names: Sequence[str], what: str) -> list[int]:
        """Return the position of each tissue of ``names`` among the model's tissues, raising on unknown ones."""
        return tissue_positions(names, self.tissues, what)

    def _bulk_donor_inputs(self, donors: Sequence[str], source_tissues: Sequence[str] | None) -> dict:
        """Return the registered bulk expression, source masks and covariates of ``donors``, as tensors.

        They come through the model's data loader, as the bulk module reads them in training, and
        without drawing from the global random state (the loader's worker seed is drawn and put back).
        """
        rows = self.adata.obs_names.get_indexer(donors)
        with torch.random.fork_rng(devices=[]):
            batches = list(self._make_data_loader(adata=self.adata, indices=rows, shuffle=False))
        tensors = {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}
        observed = tensors[REGISTRY_KEYS.OBSERVED_KEY].numpy() > 0
        allowed = np.zeros(len(self.tissues), dtype=bool)
        allowed[self._tissue_codes(_as_list(source_tissues) or self.tissues, "source tissues")] = True
        sources = observed & allowed
        lacking = np.flatnonzero(~sources.any(axis=1))
        if len(lacking):
            raise ValueError(
                f"Donors {_preview(np.asarray(donors)[lacking])} have none of the bulk source tissues, so they "
                "have no donor embedding."
            )
        covs = {
            name: tensors[key].float()
            for key, name in (
                (REGISTRY_KEYS.CAT_COVS_KEY, "cat_covs"),
                (REGISTRY_KEYS.CONT_COVS_KEY, "cont_covs"),
            )
            if key in tensors
        }
        return {
            "bulk_x": tensors[REGISTRY_KEYS.X_KEY].float(),
            "bulk_sources": torch.as_tensor(sources),
            **covs,
        }

    def train_cell_type_signatures(
        self,
        signatures: AnnData,
        donor_key: str = "donor",
        tissue_key: str = "tissue",
        cell_type_key: str = "cell_type",
        n_cells_key: str = "n_cells",
        library_size_key: str = "library_size",
        layer: str | None = None,
        train_donors: Sequence[str] | None = None,
        validation_donors: Sequence[str] | None = None,
        source_tissues: Sequence[str] | None = None,
        freeze_pretrained: bool = True,
        max_epochs: int = 200,
        lr: float = 1e-3,
        batch_size: int = 128,
        n_cell_type_latent: int = 120,
        n_hidden_decoder: int = 128,
        dropout_rate: float | None = None,
        bulk_offset: bool | None = None,
        accelerator: str = "auto",
        devices: int | list[int] | str = "auto",
        plan_kwargs: dict | None = None,
        **trainer_kwargs,
    ) -> None:
        """Learn cell-type signatures from the bulk model by transfer learning :cite:p:`Vinas2023`.

        Adds learnable cell-type embeddings, a hyperedge MLP over (donor, tissue, metagene, cell
        type) and a zero-inflated negative-binomial decoder over the signature genes (which may
        differ from the bulk genes), and fits them to observed signatures; each donor's
        embedding comes from its bulk tissues in the registered MuData. The pretrained bulk
        parameters stay fixed unless ``freeze_pretrained=False``. Calling it again replaces the
        signature part once training succeeds; a run that raises leaves the model as it was. The
        signature part (head settings and weights, cell types, genes, column names) is in
        ``model.signature_setup_`` and is saved with the model; training history is in
        ``model.signature_history_``.

        Parameters
        ----------
        signatures
            Summed counts, one row per (donor, tissue, cell type), e.g. from
            :func:`hyfa.pp.aggregate_signatures`. Donors must be donors of the model's MuData and
            tissues tissues of the model.
        donor_key, tissue_key, cell_type_key
            Columns of ``signatures.obs`` naming each row's donor, tissue and cell type.
        n_cells_key, library_size_key
            Columns of ``signatures.obs`` with the number of cells summed and their mean library
            size (total counts per cell).
        layer
            Layer of ``signatures`` with the counts; ``None`` uses ``X``.
        train_donors
            Donors whose signatures train the model (default: all but ``validation_donors``).
        validation_donors
            Donors whose signatures give the validation loss.
        source_tissues
            Bulk tissues the donor embeddings may use (default: all of the donor's).
        freeze_pretrained
            Keep the bulk model fixed (default) or fine-tune it as well.
        max_epochs
            Passes through the training signatures.
        lr
            Adam learning rate.
        batch_size
            Signatures per minibatch.
        n_cell_type_latent
            Cell-type embedding size.
        n_hidden_decoder
            Width of the signature decoder's hidden layer.
        dropout_rate
            Dropout in the new layers; ``None`` uses the bulk model's.
        bulk_offset
            Learn each signature relative to the bulk model's predicted profile of the row's
            (donor, tissue) on the genes both share, with a learnable weight per gene; this
            carries each tissue's gene levels, known from bulk, to tissues without single-cell
            data. ``None`` (default) uses it when
            the bulk model models counts (``gene_likelihood="nb"`` or ``"zinb"``) and shares genes
            with the signatures; normalized bulk data (``"normal"``) has no gene levels to carry.
            On the simulated paired data of ``benchmarks/signatures_simulated.py`` it raised the
            median per-gene R² in the tissue without cells from -0.40 to -0.05 (cross-tissue mean
            signature: -0.31), and left the tissues with cells about unchanged.
        accelerator, devices
            Passed to :class:`scvi.train.Trainer`.
        plan_kwargs
            Passed to :class:`scvi.train.TrainingPlan`.
        **trainer_kwargs
            Passed to :class:`scvi.train.Trainer`.
        """
        if not self.is_trained_:
            raise RuntimeError(
                "Train the bulk model (model.train()) before transferring it to cell-type signatures."
            )
        keys = {
            "donor": donor_key,
            "tissue": tissue_key,
            "cell_type": cell_type_key,
            "n_cells": n_cells_key,
            "library_size": library_size_key,
        }
        codes = self._signature_codes(signatures.obs, keys)
        n_cells = positive_column(signatures.obs, n_cells_key)
        library = positive_column(signatures.obs, library_size_key)
        counts = counts_matrix(signatures, layer)
        cell_types = sorted(set(codes["cell_type"]))
        donors = list(dict.fromkeys(codes["donor"]))
        train_rows, val_rows = signature_split(codes["donor"], train_donors, validation_donors)
        inputs = self._bulk_donor_inputs(donors, source_tissues)

        bulk_gene_index = self._bulk_gene_index(signatures.var_names, bulk_offset)
        log_library = np.log(library[train_rows])
        head = {
            "n_cell_types": len(cell_types),
            "n_genes": signatures.n_vars,
            "n_cell_type_latent": n_cell_type_latent,
            "n_predictor_layers": self.module.n_predictor_layers,
            "n_hidden_decoder": n_hidden_decoder,
            "dropout_rate": self.module.dropout_rate if dropout_rate is None else dropout_rate,
            "norm": self.module.norm,
            "log_library_mean": float(log_library.mean()),
            "log_library_sd": float(log_library.std()) if len(log_library) > 1 else 1.0,
            "bulk_gene_index": bulk_gene_index,
        }
        module = CellTypeSignatureModule.from_bulk_module(
            self.module, head, freeze_pretrained=freeze_pretrained, **inputs
        )
        internal = AnnData(
            X=counts,
            obs=pd.DataFrame(
                {
                    SIGNATURE_KEYS.DONOR_KEY: pd.Index(donors).get_indexer(codes["donor"]).astype(np.float32),
                    SIGNATURE_KEYS.TISSUE_KEY: codes["tissue"].astype(np.float32),
                    SIGNATURE_KEYS.CELL_TYPE_KEY: pd.Index(cell_types)
                    .get_indexer(codes["cell_type"])
                    .astype(np.float32),
                    SIGNATURE_KEYS.N_CELLS_KEY: n_cells,
                    SIGNATURE_KEYS.LIBRARY_KEY: library,
                },
                index=signatures.obs_names.astype(str),
            ),
        )
        plan_kwargs = {"optimizer": "Adam", "lr": lr, "eps": 1e-8, "weight_decay": 0.0, **(plan_kwargs or {})}
        history = fit(
            module, internal, train_rows, val_rows, batch_size, plan_kwargs,
            max_epochs=max_epochs, accelerator=accelerator, devices=devices, **trainer_kwargs,
        )  # fmt: skip
        # only a successful fit reaches here: the signature part is replaced as a whole
        self.module.eval()
        self.signature_history_ = history
        self.signature_setup_ = {
            "head": head,
            "head_state": {k: v.detach().cpu().clone() for k, v in module.head.state_dict().items()},
            "keys": keys,
            "cell_types": cell_types,
            "genes": list(map(str, signatures.var_names)),
            "tissues": sorted({self.tissues[t] for t in codes["tissue"][train_rows]}),
            "train_donors": sorted(set(codes["donor"][train_rows])),
            "validation_donors": sorted(set(codes["donor"][val_rows])),
            "freeze_pretrained": freeze_pretrained,
        }

    def _bulk_gene_index(self, signature_genes: pd.Index, bulk_offset: bool | None) -> list[int] | None:
        """Return each signature gene's position among the bulk genes (-1: absent), or ``None`` for no offset."""
        index = pd.Index(self.genes).get_indexer(signature_genes.astype(str))
        if bulk_offset is None:
            bulk_offset = self.module.counts and bool((index >= 0).any())
        if not bulk_offset:
            return None
        if not self.module.counts:
            raise ValueError(
                "bulk_offset needs a bulk model of counts (gene_likelihood='nb' or 'zinb'); this one models "
                "normalized expression, which has no gene levels."
            )
        if not (index >= 0).any():
            raise ValueError("bulk_offset: no signature gene is a gene of the bulk model.")
        return index.tolist()

    @property
    def cell_types(self) -> list[str]:
        """Cell types learned by :meth:`train_cell_type_signatures` (empty before)."""
        setup = getattr(self, "signature_setup_", None)
        return list(setup["cell_types"]) if setup else []

    def _require_signatures(self) -> dict:
        setup = getattr(self, "signature_setup_", None)
        if not setup:
            raise RuntimeError(
                "No cell-type signatures learned yet: call model.train_cell_type_signatures(...) first."
            )
        return setup

    @torch.inference_mode()
    def get_cell_type_signatures(
        self,
        mdata: MuData | None = None,
        donors: Sequence[str] | None = None,
        tissues: str | Sequence[str] | None = None,
        cell_types: str | Sequence[str] | None = None,
        n_cells: float | Sequence[float] | None = None,
        library_size: str | float | Sequence[float] | None = None,
        n_samples: int = 1,
        signatures: AnnData | None = None,
        source_tissues: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> AnnData:
        """Return predicted cell-type signatures, one row per (donor, tissue, cell type) :cite:p:`Vinas2023`.

        A signature is the summed counts of ``n_cells`` cells of a cell type in a tissue of a
        donor; its expected value is ``n_cells * library * s * (1 - pi)`` with ``s`` the predicted
        gene proportions and ``pi`` the zero-inflation probability. Donor embeddings come from
        the donors' bulk tissues in ``mdata``. Any tissue of the bulk model works, including
        tissues absent from the single-cell data used in :meth:`train_cell_type_signatures`.

        Parameters
        ----------
        mdata
            Bulk data the donor embeddings come from; ``None`` uses the registered MuData.
        donors
            Donors (default: all donors of ``mdata``).
        tissues
            Tissues (default: those of the single-cell training data).
        cell_types
            Cell types (default: all learned).
        n_cells
            Cells per signature: a number, or one per row. Default 1 (a per-cell average
            profile), or the observed ones with ``signatures``.
        library_size
            Mean counts per cell: ``"latent"`` (the predicted library, the default), a number, or
            one per row; with ``signatures`` the observed ones by default.
        n_samples
            Draws from the predictive distribution (``X`` is their mean when > 1).
        signatures
            Predict exactly the rows of these observed signatures instead of all combinations
            of ``donors``, ``tissues`` and ``cell_types``. Their ``obs`` columns are read by the
            names given to :meth:`train_cell_type_signatures` (``donor_key``, ``tissue_key``,
            ``cell_type_key``, ``n_cells_key``, ``library_size_key``; by default those of
            :func:`hyfa.pp.aggregate_signatures`).
        source_tissues
            Bulk tissues the donor embeddings may use (default: all of the donor's).
        batch_size
            Donors per minibatch when embedding donors.

        Returns
        -------
        AnnData with obs ``donor``, ``tissue``, ``cell_type``, ``n_cells`` and ``library_size``
        (those used; these names whatever the columns of ``signatures``), var = the signature genes, ``X`` = predicted signature (mean, or mean of
        draws), ``layers["sd"]`` = predictive standard deviation given the library size.
        """
        setup = self._require_signatures()
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        keys = setup.get("keys", DEFAULT_KEYS)
        obs = self._signature_rows(setup, signatures, donors, tissues, cell_types, mdata)
        obs["n_cells"] = self._per_row(n_cells, obs, signatures, keys["n_cells"], "n_cells", default=1.0)
        library_values = self._per_row(
            library_size if library_size != "latent" else None,
            obs,
            signatures if library_size is None else None,
            keys["library_size"],
            "library_size",
            default=np.nan,
        )
        names = list(dict.fromkeys(obs["donor"]))
        embeddings = self.get_latent_representation(
            mdata, kind="donor", donors=names, source_tissues=source_tissues, batch_size=batch_size
        )
        device = self.module.device
        donor = torch.as_tensor(embeddings[pd.Index(names).get_indexer(obs["donor"])], device=device)
        tissue = torch.as_tensor([self.tissues.index(t) for t in obs["tissue"]], device=device)
        cell_type = torch.as_tensor(
            pd.Index(setup["cell_types"]).get_indexer(obs["cell_type"]), device=device
        )
        n = torch.as_tensor(obs["n_cells"].to_numpy(np.float32), device=device)
        library = torch.as_tensor(library_values, dtype=torch.float32, device=device)
        params = self._signature_module(setup).signature_parameters(donor, tissue, cell_type)
        predicted = predicted_library(params["log_library"])
        library = torch.where(torch.isnan(library), predicted, library)
        px = signature_distribution(params, n, library)
        X = px.mean
        if n_samples > 1:
            latent = torch.isnan(torch.as_tensor(library_values, device=device))
            draws = []
            for _ in range(n_samples):
                drawn = torch.where(latent, torch.exp(params["log_library"].sample()), library)
                draws.append(signature_distribution(params, n, drawn).sample())
            X = torch.stack(draws).mean(dim=0)
        obs["library_size"] = library.cpu().numpy()
        for key in ("donor", "tissue", "cell_type"):
            obs[key] = pd.Categorical(obs[key])
        return AnnData(
            X=X.cpu().numpy(),
            obs=obs,
            var=pd.DataFrame(index=pd.Index(setup["genes"])),
            layers={"sd": count_variance(px).sqrt().cpu().numpy()},
            uns={"hyfa": {"source_tissues": _as_list(source_tissues) or "all", "n_samples": n_samples}},
        )

    def _signature_rows(self, setup, signatures, donors, tissues, cell_types, mdata) -> pd.DataFrame:
        """Return the (donor, tissue, cell type) rows to predict, with names ``donor|tissue|cell_type``."""
        roles = ("donor", "tissue", "cell_type")
        if signatures is not None:
            keys = setup.get("keys", DEFAULT_KEYS)
            obs = signatures.obs
            for role in roles:
                if keys[role] not in obs.columns:
                    raise KeyError(f"{keys[role]!r} is not a column of signatures.obs.")
            rows = pd.DataFrame({role: obs[keys[role]].astype(str).to_numpy() for role in roles})
            rows.index = signatures.obs_names.astype(str)
        else:
            names = (mdata if mdata is not None else self.adata).obs_names
            donor_list = _as_list(donors) or list(names)
            tissue_list = _as_list(tissues) or list(setup["tissues"])
            type_list = _as_list(cell_types) or list(setup["cell_types"])
            grid = pd.MultiIndex.from_product([donor_list, tissue_list, type_list], names=list(roles))
            rows = grid.to_frame(index=False)
            rows.index = ["|".join(r) for r in grid]
        self._tissue_codes(list(dict.fromkeys(rows["tissue"])), "tissues")
        unknown = sorted(set(rows["cell_type"]) - set(setup["cell_types"]))
        if unknown:
            raise ValueError(
                f"Unknown cell types {_preview(unknown)}; the model learned {_preview(setup['cell_types'])}."
            )
        return rows

    @staticmethod
    def _per_row(
        value, obs: pd.DataFrame, signatures: AnnData | None, key: str, what: str, default: float
    ) -> np.ndarray:
        """Return one ``what`` per row: ``value``, else column ``key`` of ``signatures.obs``, else ``default``."""
        if value is None:
            if signatures is not None:
                return positive_column(signatures.obs, key)
            return np.full(len(obs), default, dtype=np.float32)
        values = np.broadcast_to(np.asarray(value, dtype=np.float32), (len(obs),)).copy()
        if not (np.isfinite(values) & (values > 0)).all():
            raise ValueError(f"{what} must be positive, got {value!r}.")
        return values

    def _signature_module(self, setup: dict) -> CellTypeSignatureModule:
        """Return the signature module of ``setup`` on the bulk module, in eval mode.

        The head is rebuilt from ``setup["head"]`` and loaded with ``setup["head_state"]``; its
        construction draws no random numbers (the global seed state is left as it was).
        """
        with torch.random.fork_rng(devices=[]):
            module = CellTypeSignatureModule.from_bulk_module(self.module, setup["head"])
        module.head.load_state_dict(setup["head_state"])
        return module.eval()
