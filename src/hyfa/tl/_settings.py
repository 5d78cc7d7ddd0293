"""Source settings of the imputation benchmark of :cite:p:`Vinas2023` and the donors each one evaluates."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from mudata import MuData

from hyfa._utils import as_list as _as_list

from ._data_access import _check_donors, _check_tissues, _format_names, _presence

logger = logging.getLogger(__name__)

__all__ = ["ACCESSIBLE_TISSUES", "PAPER_SOURCES", "evaluation_donors"]

#: The four accessible GTEx tissues used together as sources in :cite:p:`Vinas2023`.
ACCESSIBLE_TISSUES: tuple[str, ...] = (
    "Whole_Blood",
    "Skin_Sun_Exposed_Lower_leg",
    "Skin_Not_Sun_Exposed_Suprapubic",
    "Adipose_Subcutaneous",
)

#: The source settings of :cite:p:`Vinas2023` (GTEx tissue names): whole blood alone, the four accessible
#: tissues, and all of each donor's other collected tissues (``None``).
PAPER_SOURCES: Mapping[str, tuple[str, ...] | None] = MappingProxyType(
    {"whole blood": ("Whole_Blood",), "accessible": ACCESSIBLE_TISSUES, "all": None}
)

#: The surrogate tissue of :cite:p:`Vinas2023` (GTEx whole blood), the default of the surrogate baseline.
SURROGATE_TISSUE = "Whole_Blood"

#: ``source_tissues`` label of the rows of a variable-source setting evaluated with each donor's own tissues.
ALL_OTHER = "all other collected"


@dataclass(frozen=True)
class _Setting:
    """One source setting: fixed ``tissues``, or ``None`` for all of each donor's other tissues.

    A variable setting may be ``matched`` to a fixed setting: it evaluates that setting's donors and
    reuses its baseline predictions.
    """

    name: str
    tissues: tuple[str, ...] | None
    matched: str | None = None

    @property
    def label(self) -> str:
        """Return the ``source_tissues`` label of the setting's model rows."""
        return ALL_OTHER if self.tissues is None else "+".join(self.tissues)


def _setting_spec(sources: Any) -> Mapping[str, Any]:
    """Return the ``sources`` argument of :func:`evaluate_imputation` as ``{setting: tissues or None}``."""
    if isinstance(sources, str) and sources == "paper":
        return PAPER_SOURCES
    if sources is None:
        return {"all": None}
    if isinstance(sources, str):
        return {sources: [sources]}
    if isinstance(sources, Mapping):
        return sources
    names = _as_list(sources)
    return {"+".join(names): names}


def _setting(name: Any, tissues: Any, universe: Sequence[str]) -> _Setting:
    """Return one validated setting named ``name`` with source ``tissues`` (``None``: variable)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"Source setting names must be non-empty strings, got {name!r}.")
    if tissues is None:
        return _Setting(name, None)
    tissues = _as_list(tissues)
    if len(tissues) == 0:
        raise ValueError(f"Source setting {name!r} has no tissues; use None for all collected tissues.")
    if len(set(tissues)) != len(tissues):
        raise ValueError(f"Source setting {name!r} lists a tissue twice: {tissues}.")
    _check_tissues(universe, tissues, f"source tissue of setting {name!r}")
    return _Setting(name, tuple(tissues))


def _resolve_settings(sources: Any, universe: Sequence[str], match_setting: str | None) -> list[_Setting]:
    """Return the validated settings of ``sources``, variable ones matched to ``match_setting``."""
    spec = _setting_spec(sources)
    if len(spec) == 0:
        raise ValueError("`sources` holds no setting.")
    settings = [_setting(name, tissues, universe) for name, tissues in spec.items()]
    fixed = [s.name for s in settings if s.tissues is not None]
    if match_setting == "auto":
        match_setting = fixed[0] if fixed else None
    elif match_setting is not None and match_setting not in fixed:
        raise ValueError(
            f"`match_setting={match_setting!r}` must name a setting with fixed source tissues; "
            f"those are {_format_names(fixed) if fixed else 'none'}."
        )
    return [s if s.tissues is not None else _Setting(s.name, None, match_setting) for s in settings]


def _check_min_donors(min_donors: int) -> int:
    """Return ``min_donors`` as an int, or raise if it is not an integer >= 2."""
    if int(min_donors) != min_donors or min_donors < 2:
        raise ValueError(f"`min_donors` must be an integer >= 2, got {min_donors!r}.")
    return int(min_donors)


def _eligible(rule: _Setting, target: str, present: dict[str, np.ndarray]) -> np.ndarray:
    """Return the mask of donors with ``target`` and every source of ``rule`` (or any other tissue)."""
    if rule.tissues is not None:
        mask = present[target].copy()
        for tissue in rule.tissues:
            mask &= present[tissue]
        return mask
    has_other = np.zeros(len(present[target]), dtype=bool)
    for tissue, collected in present.items():
        if tissue != target:
            has_other |= collected
    return present[target] & has_other


def _select(
    settings: Sequence[_Setting],
    present: dict[str, np.ndarray],
    donors: Sequence[str],
    targets: Sequence[str],
    min_donors: int,
) -> dict[str, dict[str, list[str]]]:
    """Return, per setting and kept target, the evaluation donors (in the order of ``donors``)."""
    donors = np.asarray(donors, dtype=object)
    by_name = {s.name: s for s in settings}
    selection: dict[str, dict[str, list[str]]] = {}
    for setting in settings:
        rule = by_name[setting.matched] if setting.tissues is None and setting.matched else setting
        kept: dict[str, list[str]] = {}
        for target in targets:
            if rule.tissues is not None and target in rule.tissues:
                continue
            mask = _eligible(rule, target, present)
            if mask.sum() >= min_donors:
                kept[target] = list(donors[mask])
            else:
                logger.info(
                    "Setting %r: skipping target %r, %d evaluation donors have it and the sources (< %d).",
                    setting.name,
                    target,
                    int(mask.sum()),
                    min_donors,
                )
        if not kept:
            warnings.warn(
                f"Source setting {setting.name!r}: no target tissue has at least {min_donors} evaluation "
                "donors with every source and the target.",
                UserWarning,
                stacklevel=3,
            )
        selection[setting.name] = kept
    return selection


def evaluation_donors(
    mdata: MuData,
    donors: Sequence[str],
    sources: str | Mapping[str, Sequence[str] | str | None] | Sequence[str] | None = "paper",
    target_tissues: Sequence[str] | None = None,
    min_donors: int = 25,
    match_setting: str | None = "auto",
) -> dict[str, dict[str, list[str]]]:
    """Return the evaluation donors of every source setting and target tissue kept by the paper's protocol.

    A target tissue is evaluated in a setting when at least ``min_donors`` of ``donors`` were collected
    in the target and in every source tissue of the setting :cite:p:`Vinas2023`. In a variable-source
    setting (``None``: each donor's other collected tissues) matched to a fixed setting, the donors are
    those of the matched setting; unmatched, they are the donors with the target and at least one other
    tissue. :func:`evaluate_imputation` uses this selection.

    Parameters
    ----------
    mdata
        Multi-tissue data; each modality is a tissue, donors matched by name.
    donors
        Candidate evaluation donors (e.g. the test donors).
    sources
        Source settings, as in :func:`evaluate_imputation`.
    target_tissues
        Candidate targets; ``None`` means every tissue of ``mdata``. A setting's source tissues are never
        its targets.
    min_donors
        Minimum number of evaluation donors for a target to be kept.
    match_setting
        As in :func:`evaluate_imputation`.

    Returns
    -------
    ``{setting: {target: [donor, ...]}}``, settings and targets in input order, donors in the order of
    ``donors``.

    Examples
    --------
    >>> test = mdata.obs_names[mdata.obs["split"] == "test"]
    >>> selection = hyfa.tl.evaluation_donors(mdata, test)
    >>> {setting: len(targets) for setting, targets in selection.items()}
    """
    if not isinstance(mdata, MuData):
        raise TypeError(f"`mdata` must be a MuData object, got {type(mdata).__name__}.")
    universe = list(mdata.mod)
    settings = _resolve_settings(sources, universe, match_setting)
    donors = _as_list(donors)
    _check_donors(mdata, donors, what="evaluation donors")
    targets = universe if target_tissues is None else _as_list(target_tissues)
    _check_tissues(universe, targets, "target tissue")
    return _select(
        settings, _presence(mdata, donors, universe), donors, targets, _check_min_donors(min_donors)
    )
