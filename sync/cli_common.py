"""What `hall-agent` and `hall-central` share: common options, logging, one-line errors.

Errors are one clear line on stderr, never a traceback (``--debug`` shows one); a config error
prints every problem and exits 78 (EX_CONFIG).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from contract import __version__
from contract.config import EX_CONFIG, ConfigError

EX_TEMPFAIL = 75  # sysexits.h: try again later (e.g. disk below the free-space floor)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# sd-daemon(3) priority prefixes: journald reads a leading "<N>" as the line's syslog priority,
# so `journalctl -p warning` finds warnings (SD_ERR 3, SD_WARNING 4, SD_INFO 6, SD_DEBUG 7).
_SD_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


def sd_priority(levelno: int) -> int:
    """The sd-daemon priority of a logging level (custom levels round down to the next one)."""
    for level in sorted(_SD_PRIORITY, reverse=True):
        if levelno >= level:
            return _SD_PRIORITY[level]
    return 7


class JournalFormatter(logging.Formatter):
    """Prefix every line of a record with ``<N>``: a traceback keeps its record's priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{sd_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def stderr_is_journal(env: dict[str, str] | None = None, stream: object = None) -> bool:
    """True when stderr is connected to journald (systemd.exec(5), ``$JOURNAL_STREAM``).

    systemd sets ``JOURNAL_STREAM=DEV:INODE`` for a service whose stdout/stderr go to the
    journal; a child that inherits the variable but writes elsewhere (a redirect) must not
    print prefixes, so the device and inode of stderr are compared when they can be read.
    """
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return True  # cannot tell: trust systemd's variable
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def print_error(line: str) -> None:
    """One error line on stderr; ``<3>`` (SD_ERR) in front when stderr is the journal."""
    print(("<3>" if stderr_is_journal() else "") + line, file=sys.stderr)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        # journald adds its own timestamps and reads the priority from the prefix.
        handler.setFormatter(JournalFormatter(fmt))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s " + fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)


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
            print_error(problem)
        return EX_CONFIG
    except CliError as exc:
        print_error(f"{prog}: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print_error(f"{prog}: {args.command}: {exc}")
        return exit_code_for(exc)


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    detail: str
    warn: bool = False  # passed, but worth a technician's attention

    @property
    def label(self) -> str:
        return "FAIL" if not self.ok else "WARN" if self.warn else " ok "


def report_probes(results: list[ProbeResult]) -> int:
    """Print one line a probe (``[ ok ]``/``[WARN]``/``[FAIL]``, docs/check.md); the exit code:
    1 when any failed (counted with the config check, which passed to get here), else 0."""
    for r in results:
        print(f"[{r.label}] {r.name}: {r.detail}")
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results) + 1} checks failed", file=sys.stderr)
        return 1
    return 0


def parse_only(text: str | None, probes: Iterable[str]) -> set[str] | None:
    """``check --only a,b``: the probes named, or None for all; an unknown name is an error."""
    if not text:
        return None
    only = {x.strip() for x in text.split(",") if x.strip()}
    names = list(probes)
    unknown = only - set(names) - {"config"}
    if unknown:
        raise CliError(
            f"check --only: unknown probe(s) {', '.join(sorted(unknown))}; "
            f"expected some of config,{','.join(names)}",
            2,
        )
    return only
