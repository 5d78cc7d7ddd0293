"""Helpers of docs/conf.py: kept in a module so that Sphinx can pickle the config that uses them."""

from __future__ import annotations

import filecmp
import importlib.util
import inspect
import os
import re
import shutil
import socket
import sys
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit

from sphinx.util import logging

logger = logging.getLogger("hyfa.docs")


# -- online / offline ----------------------------------------------------------------------------


def is_online(probe_url: str) -> bool:
    """Whether the docs build should use intersphinx (and check every reference).

    ``HYFA_DOCS_OFFLINE=1`` forces offline and ``HYFA_DOCS_ONLINE=1`` online; Read the Docs
    (``READTHEDOCS=True``) is online; otherwise one connection to ``probe_url``'s host, with a
    2-second timeout, decides.
    """
    if os.environ.get("HYFA_DOCS_OFFLINE", "") not in ("", "0"):
        return False
    if os.environ.get("HYFA_DOCS_ONLINE", "") not in ("", "0") or os.environ.get("READTHEDOCS") == "True":
        return True
    try:
        socket.create_connection((urlsplit(probe_url).hostname, 443), timeout=2).close()
    except OSError:
        return False
    return True


def skip_external_reference(app, domain, node) -> bool | None:
    """``warn-missing-reference`` handler for offline builds: drop warnings about other projects' objects.

    Without intersphinx inventories a reference such as ``numpy.ndarray`` cannot resolve. Its
    warning is dropped when the target is dotted and its top-level package is importable and not
    ``hyfa``. Every other unresolved reference still warns: anything under ``hyfa.``, relative
    names such as ``setup_mudata`` inside a hyfa class, and unqualified names such as ``AnnData``
    (which would not resolve online either).
    """
    if domain is None or domain.name != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    top = target.split(".")[0]
    if "." not in target or top == "hyfa" or not top.isidentifier():
        return None
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    return True if found else None


# -- type hints ----------------------------------------------------------------------------------


class FixupModuleName:
    """Public module of a type named in an annotation, as the projects' inventories list it.

    ``pandas.core.frame`` -> ``pandas``, ``mudata._core.mudata`` -> ``mudata``,
    ``scipy.sparse._csr`` -> ``scipy.sparse``, ``hyfa.data._gtex`` -> ``hyfa.data``,
    ``hyfa.model._model`` -> ``hyfa``. A class instance rather than a function, because
    Sphinx caches (pickles) only config values that are not functions.
    """

    def __call__(self, module: str) -> str:
        """Return the public module for ``module``."""
        parts = module.split(".")
        if parts[0] in ("pandas", "anndata", "mudata"):
            return parts[0]
        if module.startswith("hyfa.model"):
            return "hyfa"  # the model is documented as hyfa.HYFA
        for i, part in enumerate(parts):
            if part.startswith("_") and i > 0:
                return ".".join(parts[:i])
        return module

    def __eq__(self, other) -> bool:  # equal across builds, so the cached config counts as unchanged
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self).__name__)


# -- inherited scvi-tools members ----------------------------------------------------------------


def _defined_in(obj) -> str:
    """Module that defines a member (function, classmethod, property)."""
    obj = getattr(obj, "fget", obj)  # property -> its getter
    obj = getattr(obj, "__func__", obj)  # bound classmethod -> function
    try:
        obj = inspect.unwrap(obj)
    except ValueError:  # pragma: no cover - a wrapper cycle
        pass
    return getattr(obj, "__module__", None) or ""


def make_skip_member(shown: set[str]):
    """Return an ``autodoc-skip-member`` handler hiding members inherited from scvi-tools, except ``shown``.

    The event comes from autodoc (``what`` is the parent's type) and from autosummary when it
    fills the class template's member tables (``what`` is the member's type); both pass the member.
    """

    def skip_member(app, what, name, obj, skip, options):
        if skip or what == "module":
            return None
        if _defined_in(obj).split(".")[0] == "scvi":
            return name not in shown
        return None

    return skip_member


# -- tutorials -----------------------------------------------------------------------------------


def sync_tutorials(source: Path, target: Path) -> None:
    """Mirror ``source/*.ipynb`` into ``target``, copying only changed files (keeps rebuilds incremental)."""
    target.mkdir(exist_ok=True)
    wanted = {p.name: p for p in sorted(source.glob("*.ipynb"))}
    for old in target.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for name, src in wanted.items():
        dst = target / name
        if not dst.exists() or not filecmp.cmp(src, dst, shallow=False):
            shutil.copy2(src, dst)


# -- every public name is in the API reference ---------------------------------------------------


def check_api_listed(api_dir: Path, modules: list[str]) -> None:
    """Warn (an error under -W) about names in a module's ``__all__`` that no page of ``api_dir`` lists."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(api_dir.glob("*.md")))
    listed = set(re.findall(r"^\s+~?([\w.]+)\s*$", text, flags=re.MULTILINE))
    for modname in modules:
        module = import_module(modname)
        for name in getattr(module, "__all__", []):
            if name.startswith("__") or isinstance(getattr(module, name), type(sys)):
                continue  # __version__; subpackages have their own pages
            if name not in listed and f"{modname}.{name}" not in listed:
                logger.warning(
                    "%s.%s is public (in __all__) but no page of docs/api/ lists it", modname, name
                )
