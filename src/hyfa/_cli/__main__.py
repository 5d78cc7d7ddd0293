"""``python -m hyfa._cli``: the ``hyfa`` command line."""

import sys

from . import main

sys.exit(main())
