"""Sphinx configuration of the hyfa documentation.

Offline build, warnings are errors (what CI runs):  ``bash docs/build.sh``, i.e.
``HYFA_DOCS_OFFLINE=1 sphinx-build -W --keep-going -E -b html docs docs/_build/html``.

Two modes (``_ext/hyfa_docs.py::is_online``):

- *online* (Read the Docs, ``HYFA_DOCS_ONLINE=1``, or a machine that reaches docs.python.org):
  intersphinx links to anndata, mudata, scanpy, scvi-tools, torch, numpy, pandas, ... and
  ``nitpicky``: every cross-reference must resolve, to our pages or to theirs. Each inventory is
  fetched once first (``hyfa_docs.reachable_inventories``); a site that does not answer is left
  out and only the references into that project go unchecked, so one outage cannot fail the build.
- *offline* (``HYFA_DOCS_OFFLINE=1``, CI, no network): no intersphinx, still ``nitpicky``, but
  the warnings about references to other projects' objects (dotted targets whose top-level package
  is importable and not hyfa, e.g. ``numpy.ndarray``) are dropped, as they cannot resolve without
  inventories. A broken reference to hyfa, relative or absolute, still fails the build; nothing
  else is silenced.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

import hyfa_docs  # noqa: E402 - docs/_ext, needs the path above

import hyfa  # noqa: E402

# -- Project -------------------------------------------------------------------------------------

project = "hyfa"
author = "hyfa developers"
copyright = f"{date.today().year}, {author}"
release = hyfa.__version__
version = ".".join(release.split(".")[:2])

# -- Extensions ----------------------------------------------------------------------------------

extensions = [
    "myst_nb",  # Markdown pages (MyST) and the tutorial notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # numpy-style docstrings; must come before sphinx_autodoc_typehints
    "sphinx_autodoc_typehints",  # parameter and return types from the annotations
    "sphinx.ext.intersphinx",  # mapping emptied when offline, see below
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinxcontrib.bibtex",
    "sphinx_copybutton",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_ext", "**/.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
root_doc = "index"
default_role = "literal"  # `x` in docstrings is code, as in numpydoc

# -- MyST and notebooks --------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
# Tutorials are committed with the outputs of a full run (not the fast mode of
# tutorials/run_fast.py); the docs build never executes them.
nb_execution_mode = "off"
nb_merge_streams = True

# The tutorials live in tutorials/ at the repository root, where users find them; they are copied
# into docs/notebooks/ (generated, git-ignored) so that Sphinx, locally and on Read the Docs, sees
# them inside its source tree. docs/tutorials.md lists them: adding a tutorial is one line there.
hyfa_docs.sync_tutorials(HERE.parent / "tutorials", HERE / "notebooks")

# -- API reference -------------------------------------------------------------------------------

autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "groupwise"
# The constructor signature in the class header: "separated" adds empty __new__ / __init__ entries.
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True  # show defaults as written in the source

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_param = True  # lets sphinx_autodoc_typehints attach the types to the parameters
napoleon_use_rtype = True
napoleon_use_ivar = True  # an "Attributes" section becomes fields, not duplicate object entries
napoleon_include_init_with_doc = False
# hyfa's "Returns" / "Yields" sections are prose (scverse style), not "name : type" entries:
# render them as written, under a heading. The return type comes from the annotation.
# (sphinx-autodoc-typehints marks numpy "Returns" sections with a ":" line for napoleon's own
# parser; hyfa_docs.drop_typehints_return_marker removes it, or it would open every section.)
napoleon_custom_sections = ["Returns", "Yields"]

typehints_defaults = "comma"  # "x (int, default: 3)"
typehints_document_rtype = True
always_document_param_types = False
typehints_fixup_module_name = hyfa_docs.FixupModuleName()  # pandas.core.frame.DataFrame -> pandas.DataFrame

# Inherited scvi-tools members of hyfa.HYFA.
# HYFA subclasses scvi-tools' BaseModelClass, which brings ~35 public members. Most are registry
# plumbing (register_manager, get_from_registry, ...) or do not apply to HYFA
# (get_normalized_expression, differential_abundance), and their docstrings are scvi-tools'.
# Decision: the HYFA page shows every member defined in hyfa (including hyfa's own mixins, e.g.
# the cell-type signatures), plus the inherited members a HYFA user calls, listed here. The rest
# stay documented with scvi.model.base.BaseModelClass.
INHERITED_SCVI_MEMBERS_SHOWN = {
    "save",
    "load",
    "history",
    "is_trained",
    "device",
    "to_device",
    "adata",
    "train_indices",
    "validation_indices",
    "test_indices",
    "view_anndata_setup",
}

# -- Bibliography --------------------------------------------------------------------------------

bibtex_bibfiles = ["references.bib"]  # rendered on references.md; docstrings cite :cite:p:`Vinas2023`
bibtex_reference_style = "author_year"
bibtex_default_style = "plain"

# -- HTML ----------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"hyfa {release}"
html_theme_options = {"show_toc_level": 2}
html_show_sourcelink = False

# -- Cross-references: intersphinx and nitpicky, online or offline -------------------------------

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable", None),
    "scvi-tools": ("https://docs.scvi-tools.org/en/stable", None),
    "torch": ("https://docs.pytorch.org/docs/stable", None),
    "numpy": ("https://numpy.org/doc/stable", None),
    "pandas": ("https://pandas.pydata.org/docs", None),
    "scipy": ("https://docs.scipy.org/doc/scipy", None),
    "sklearn": ("https://scikit-learn.org/stable", None),
    "matplotlib": ("https://matplotlib.org/stable", None),
}
intersphinx_timeout = 10

ONLINE = hyfa_docs.is_online(intersphinx_mapping["python"][0])
nitpicky = True
# Online: every reference must resolve, except these, which no inventory above lists.
nitpick_ignore = [
    ("py:class", "rnanorm.TMM"),  # no rnanorm inventory known to us
    ("py:class", "hyfa.module._optim.InPlaceAdam"),  # private optimizer named in HYFA.train's docstring
]
nitpick_ignore_regex = [
    # Lightning classes in the signatures of members inherited from scvi-tools (HYFA.load, ...).
    (r"py:class", r"lightning\..*"),
]
UNREACHABLE: list[str] = []
if ONLINE:
    # One unreachable site must not fail the build: fetch each inventory once, keep those that
    # answer, and skip only the references into the others (logged, see hyfa_docs).
    intersphinx_mapping, UNREACHABLE = hyfa_docs.reachable_inventories(
        intersphinx_mapping, intersphinx_timeout
    )
else:
    intersphinx_mapping = {}
    # Offline, references to other projects cannot resolve; docs/conf.py's setup() drops exactly
    # those warnings (hyfa_docs.skip_external_reference). References into hyfa are still checked.

API_MODULES = ["hyfa", "hyfa.data", "hyfa.pp", "hyfa.tl", "hyfa.pl"]


def setup(app):
    """Connect the hooks of docs/_ext/hyfa_docs.py."""
    app.connect("autodoc-skip-member", hyfa_docs.make_skip_member(INHERITED_SCVI_MEMBERS_SHOWN))
    # After sphinx-autodoc-typehints' handler (priority 499), before napoleon's (500).
    app.connect("autodoc-process-docstring", hyfa_docs.drop_typehints_return_marker, priority=499)
    app.connect("autodoc-process-docstring", hyfa_docs.module_data_docstring)
    if not ONLINE:
        app.connect("warn-missing-reference", hyfa_docs.skip_external_reference)
    elif UNREACHABLE:
        app.connect("warn-missing-reference", hyfa_docs.make_skip_unreachable(UNREACHABLE))
    # A public name missing from docs/api/*.md is a warning, so an error under -W.
    app.connect("builder-inited", lambda app: hyfa_docs.check_api_listed(HERE / "api", API_MODULES))
