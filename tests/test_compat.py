"""The declared torch floor is the one hyfa enforces, and older torch is refused with a clear message."""

import re
import tomllib
from pathlib import Path

import pytest
import torch

from hyfa._compat import TORCH_MIN, check_torch


def test_declared_floor_matches_the_enforced_one():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    (spec,) = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\b", d)]
    assert spec == "torch>=" + ".".join(map(str, TORCH_MIN))


@pytest.mark.parametrize("version", ["2.2.0", "2.3.1+cpu", "1.13.1"])
def test_older_torch_is_refused(version):
    with pytest.raises(ImportError, match=f"torch >= 2.4, found torch {re.escape(version)}"):
        check_torch(version)


@pytest.mark.parametrize("version", ["2.4.0", "2.13.0+cpu", "3.0.0a0"])
def test_supported_torch_is_accepted(version):
    check_torch(version)


def test_the_apis_behind_the_floor_exist_in_this_torch():
    assert callable(torch.get_autocast_dtype) and torch.is_autocast_enabled("cpu") is False
    torch.optim.Adam([torch.zeros(2, requires_grad=True)], fused=True)
