"""Tissue identifiers derived from GTEx's detailed tissue names (``SMTSD``)."""

from __future__ import annotations

import re

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]+")

#: Tissues the HYFA paper :cite:p:`Vinas2023` leaves out of GTEx v8 because they have too few donors.
PAPER_DROPPED_TISSUES: tuple[str, ...] = (
    "Bladder",
    "Cervix_Ectocervix",
    "Cervix_Endocervix",
    "Fallopian_Tube",
    "Kidney_Medulla",
)


def tissue_id(smtsd: str) -> str:
    """Return the identifier of a GTEx tissue: its ``SMTSD`` name with punctuation turned into ``_``.

    Every run of characters other than ASCII letters and digits becomes a single ``_``, and
    leading or trailing ``_`` are stripped. The rule is idempotent, so an identifier maps to itself.

    Parameters
    ----------
    smtsd
        Detailed tissue name as in the ``SMTSD`` column of GTEx's sample attributes.

    Returns
    -------
    The tissue identifier, e.g. ``"Heart_Atrial_Appendage"`` for ``"Heart - Atrial Appendage"`` and
    ``"Cells_EBV_transformed_lymphocytes"`` for ``"Cells - EBV-transformed lymphocytes"``.

    Examples
    --------
    >>> from hyfa.data import tissue_id
    >>> tissue_id("Brain - Frontal Cortex (BA9)")
    'Brain_Frontal_Cortex_BA9'
    """
    if not isinstance(smtsd, str):
        raise TypeError(f"Tissue names must be strings, got {smtsd!r} ({type(smtsd).__name__}).")
    ident = _NON_ALNUM.sub("_", smtsd).strip("_")
    if not ident:
        raise ValueError(f"Tissue name {smtsd!r} has no letters or digits, so it gives no identifier.")
    return ident
