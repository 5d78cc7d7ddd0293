"""Shared parameter docs: every constructor argument of the model and its module is documented once, identically."""

import inspect
import re

import pytest

import hyfa
from hyfa import _docs
from hyfa.module import HYFAModule


def _documented(doc: str) -> set[str]:
    section = doc.split("Parameters\n----------\n", 1)[1].split("\n\n", 1)[0]
    names = set()
    for line in section.splitlines():
        if line and not line.startswith(" "):
            names |= {n.strip() for n in line.split(",")}
    return names


@pytest.mark.parametrize("cls", [hyfa.HYFA, HYFAModule])
def test_every_constructor_argument_is_documented(cls):
    arguments = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    assert arguments <= _documented(cls.__doc__), arguments - _documented(cls.__doc__)
    assert "{" + "architecture}" not in cls.__doc__  # placeholders filled


def test_model_and_module_share_the_architecture_text():
    for shared in (_docs.architecture, _docs.likelihood, _docs.pseudo_masks):
        assert shared in hyfa.HYFA.__doc__ and shared in HYFAModule.__doc__
    assert len(re.findall("Embedding sizes of donor", hyfa.HYFA.__doc__ + HYFAModule.__doc__)) == 2
