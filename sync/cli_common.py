"""What `hall-agent` and `hall-central` share: common options, logging, one-line errors.

Errors are one clear line on stderr, never a traceback (``--debug`` shows one); a config error
prints every problem and exits 78 (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from contract import __version__
from contract.config import EX_CONFIG, ConfigError

EX_TEMPFAIL = 75  # sysexits.h: try again later (e.g. disk below the free-space floor)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    # Under systemd, journald adds its own timestamps (JOURNAL_STREAM is set by systemd).
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def add_common_options(
    parser: argparse.ArgumentParser, default_config: Path, what: str
) -> argparse._SubParsersAction:
    """-c/--config, -v, --debug, --version; returns the required sub-command parsers."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=default_config,
        help=f"{what} config file (default {default_config})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"{parser.prog} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    return sub


def run_command(
    prog: str,
    args: argparse.Namespace,
    command: Callable[[], int],
    exit_code_for: Callable[[Exception], int] = lambda exc: 1,
) -> int:
    """Run a command, turning every failure into one line on stderr and an exit code."""
    try:
        return command()
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EX_CONFIG
    except CliError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"{prog}: {args.command}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
