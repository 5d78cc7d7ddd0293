"""The ``hyfa`` command line: ``hyfa demo | train | impute | merge | evaluate``.

Every command documents its options in ``hyfa COMMAND --help``. Exit status: 0 on success, 2 for
a usage error (an unknown option, a missing input file, an existing output without
``--overwrite``), 1 when hyfa itself refuses the data or the arguments (the message says why).
"""

from __future__ import annotations

import sys

from ._commands import _demo, _evaluate, _impute, _merge, _train, merge_imputed
from ._common import CLI_RECORD, CLIError, donor_chunk
from ._parser import build_parser

__all__ = ["CLI_RECORD", "build_parser", "donor_chunk", "main", "merge_imputed"]


COMMANDS = {"train": _train, "impute": _impute, "merge": _merge, "evaluate": _evaluate}


def main(argv: list[str] | None = None) -> int:
    """Run the ``hyfa`` command line; return the exit status (see ``hyfa --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    try:
        return COMMANDS[args.command](args, subparser)
    except (CLIError, ValueError, KeyError, FileExistsError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"hyfa {args.command}: error: {message}", file=sys.stderr)
        return 1
