"""`cityeye` command line: each package registers its own sub-commands.

JSON goes to stdout, progress bars and logs to stderr, so tools can be piped.
Exit codes: 0 ok, 2 bad input or configuration, 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from cityeye import __version__

# Modules that expose `register(subparsers)`; each adds its sub-commands with `func` set.
COMMAND_MODULES = (
    "cityeye.vision.cli",
    "cityeye.zones.cli",
    "cityeye.zones.count_cli",
    "cityeye.models.cli",
    "cityeye.edge.cli",
    "cityeye.edge.spool_cli",
    "cityeye.streams.cli",
    "cityeye.api.cli",
    "cityeye.demo",
)


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cityeye", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cityeye {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    from cityeye.config import ConfigError
    from cityeye.models.registry import ModelError

    try:
        rc = args.func(args)
    except (UsageError, ConfigError, ModelError, FileNotFoundError, ValueError) as exc:
        print(f"cityeye {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
