"""The oldest torch that hyfa runs on, checked when hyfa is imported."""

from __future__ import annotations

import re

#: torch 2.4 added the device-generic autocast queries (``torch.is_autocast_enabled(device_type)``,
#: ``torch.get_autocast_dtype``) and the fused CPU Adam that hyfa uses; keep in step with pyproject.toml.
TORCH_MIN = (2, 4)


def check_torch(version: str) -> None:
    """Raise :class:`ImportError` if torch ``version`` (e.g. ``"2.3.1+cpu"``) is older than :data:`TORCH_MIN`."""
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if found < TORCH_MIN:
        raise ImportError(
            f"hyfa needs torch >= {'.'.join(map(str, TORCH_MIN))}, found torch {version}. Install a newer "
            "build first (e.g. pip install torch==2.13.0 for CPU-only machines)."
        )
