#!/usr/bin/env bash
# Build the documentation offline with warnings as errors, as CI does (about 30 s on 2 cores, plus the install).
# Usage, from anywhere:  bash docs/build.sh   (installs the package with its `doc` extra first)
#   SKIP_INSTALL=1 bash docs/build.sh   skips the pip install.
# Output: docs/_build/html/index.html. HYFA_DOCS_OFFLINE=1 turns off intersphinx (CI has no network)
# while still failing on broken references into hyfa; see docs/conf.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_INSTALL:-0}" != "1" ]]; then
  pip install -e ".[doc]"
fi
export HYFA_DOCS_OFFLINE=1 MPLBACKEND=Agg
# -E: read every page afresh, so a warning is reported on every run, not only after the page changed.
sphinx-build -W --keep-going -E -b html docs docs/_build/html
