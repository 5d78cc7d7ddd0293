"""Named hyperparameter presets of :class:`hyfa.HYFA`: ``hyfa.PRESETS`` and :func:`hyfa.preset`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A named set of model and training hyperparameters of :class:`hyfa.HYFA`.

    Use it as ``hyfa.HYFA(mdata, **preset.model)`` and ``model.train(..., **preset.train)``; the
    two mappings are fresh dictionaries on every access, so editing them changes nothing shared.

    Parameters
    ----------
    name
        The preset's name, a key of :data:`hyfa.PRESETS`.
    description
        What it is for, in one sentence.
    model_kwargs
        Keyword arguments of :class:`hyfa.HYFA`; the model's defaults apply to the others.
    train_kwargs
        Keyword arguments of :meth:`hyfa.HYFA.train`.
    """

    name: str
    description: str
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    train_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> dict[str, Any]:
        """Keyword arguments of :class:`hyfa.HYFA` (a copy)."""
        return dict(self.model_kwargs)

    @property
    def train(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`hyfa.HYFA.train` (a copy)."""
        return dict(self.train_kwargs)

    def __getitem__(self, key: str) -> dict[str, Any]:
        # ``PRESETS[name]["model"]`` / ``["train"]``, the dictionary form of hyfa <= 0.1.
        if key not in ("model", "train"):
            raise KeyError(key)
        return getattr(self, key)


_QUICK = Preset(
    name="quick",
    description=(
        "A small architecture for gene panels of tens to a few hundred genes (about 1.5 minutes for "
        "200 epochs on the bundled 59-gene GTEx excerpt, 2 CPU cores)."
    ),
    model_kwargs=MappingProxyType(
        {
            "n_metagenes": 10,
            "n_factors": 32,
            "n_heads": 8,
            "n_head_dim": 16,
            "n_donor_latent": 64,
            "n_tissue_latent": 32,
            "n_metagene_latent": 16,
            "n_hidden_decoder": 128,
        }
    ),
    train_kwargs=MappingProxyType({"max_epochs": 200, "lr": 2e-3}),
)

_PAPER = Preset(
    name="paper",
    description=(
        "The paper's tuned configuration for transcriptome-wide data (the defaults of hyfa.HYFA: "
        "50 metagenes x 98 factors, 28 heads x 28, learning rate 4.56e-4) with the paper's uniform "
        "number of source tissues, without the gene-level skip connection and without the validation "
        "calibration; slow on a CPU."
    ),
    model_kwargs=MappingProxyType({"source_count_exponent": 1.0, "gene_skip": False}),
    train_kwargs=MappingProxyType({"max_epochs": 200, "batch_size": 63, "calibrate": False}),
)

#: The named presets, ``{"quick": ..., "paper": ...}`` (read-only); see :class:`Preset`.
PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in (_QUICK, _PAPER)})


def preset(name: str) -> Preset:
    """Return the named hyperparameter preset.

    ``"quick"`` suits small gene panels (tens to a few hundred genes, e.g. the bundled GTEx
    excerpt); ``"paper"`` is the configuration of :cite:p:`Vinas2023` for transcriptome-wide data.

    Parameters
    ----------
    name
        ``"quick"`` or ``"paper"`` (the keys of :data:`hyfa.PRESETS`).

    Returns
    -------
    The :class:`Preset`; pass ``preset.model`` to :class:`hyfa.HYFA` and ``preset.train`` to
    :meth:`hyfa.HYFA.train`.

    Examples
    --------
    >>> import hyfa
    >>> quick = hyfa.preset("quick")
    >>> quick.model["n_metagenes"], quick.train["lr"]
    (10, 0.002)

    With a registered ``mdata``::

        model = hyfa.HYFA(mdata, **quick.model)
        model.train(split_key="split", **quick.train)
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; choose from {sorted(PRESETS)}.") from None
