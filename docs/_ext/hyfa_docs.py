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


# -- intersphinx: only the inventories that can be fetched ---------------------------------------

#: Top-level packages documented by each intersphinx project, for dropping the references into a
#: project whose inventory could not be fetched (``python``: every standard-library module).
PROJECT_PACKAGES = {
    "python": tuple(sys.stdlib_module_names) + ("builtins",),
    "scvi-tools": ("scvi",),
    "sklearn": ("sklearn",),
}


def reachable_inventories(mapping: dict, timeout: float = 10) -> tuple[dict, list[str]]:
    """Return ``(mapping of the projects whose objects.inv can be fetched, names of the others)``.

    One unreachable site (a timeout, an outage) would otherwise fail an online build under
    ``-W``: intersphinx warns that it cannot fetch the inventory, and every reference into that
    project then warns as unresolved. Each inventory is fetched once here (``timeout`` seconds);
    the projects that fail are reported (logged, not a warning) and left out, and
    :func:`make_skip_unreachable` drops the unresolved references into exactly those projects.
    """
    import urllib.request

    kept, dropped = {}, []
    for name, (url, inventory) in mapping.items():
        target = inventory or url.rstrip("/") + "/objects.inv"
        try:
            with urllib.request.urlopen(
                target, timeout=timeout
            ) as response:  # the fixed https URLs of conf.py
                response.read(64)
        except (OSError, ValueError) as error:
            logger.info("intersphinx: %s unreachable (%s); its references are not checked", target, error)
            dropped.append(name)
        else:
            kept[name] = (url, inventory)
    return kept, dropped


def make_skip_unreachable(dropped: list[str]):
    """Return a ``warn-missing-reference`` handler dropping references into the ``dropped`` projects only."""
    packages = {pkg for name in dropped for pkg in PROJECT_PACKAGES.get(name, (name,))}

    def skip(app, domain, node) -> bool | None:
        if domain is None or domain.name != "py":
            return None
        target = node.get("reftarget", "").lstrip("~.")
        return True if target.split(".")[0] in packages else None

    return skip


# -- docstrings ----------------------------------------------------------------------------------


def drop_typehints_return_marker(app, what, name, obj, options, lines) -> None:
    """Undo sphinx-autodoc-typehints' ``:`` under a numpy ``Returns`` header (``autodoc-process-docstring``).

    The extension inserts a line ``:`` below ``Returns`` / ``-------`` so that napoleon does not
    read the first line as a type. hyfa's ``Returns`` sections are prose rendered as written
    (``napoleon_custom_sections`` in conf.py), so the marker would show as a stray ``:``. Runs
    after the extension's handler and before napoleon's (both at priority 499/500).
    """
    for i in range(2, len(lines)):
        if (
            lines[i] == ":"
            and lines[i - 2].strip().lower() == "returns"
            and set(lines[i - 1].strip()) == {"-"}
        ):
            del lines[i]
            return


def module_data_docstring(app, what, name, obj, options, lines) -> None:
    """Use the ``#:`` comment of a module-level constant that a package re-exports (``autodoc-process-docstring``).

    autodoc looks for ``#:`` comments in the module it documents the name in (``hyfa.tl``), not
    where the constant is defined (``hyfa.tl._settings``), and falls back to the docstring of the
    value's type (a tuple's "Built-in immutable sequence"), or to nothing. This finds the comment
    in the hyfa module that defines the same object.
    """
    if what not in ("data", "attribute") or not name.startswith("hyfa."):
        return
    type_doc = (type(obj).__doc__ or "").strip()
    if lines and "\n".join(lines).strip() != type_doc and "\n".join(lines).strip():
        return
    from sphinx.pycode import ModuleAnalyzer

    attr = name.rsplit(".", 1)[1]
    for modname, module in sorted(sys.modules.items()):
        if not modname.startswith("hyfa.") or getattr(module, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:  # noqa: BLE001 - not analyzable (no source): try the next module
            continue
        if ("", attr) in docs:
            lines[:] = list(docs[("", attr)])
            return
