"""``emolens`` command line: analyze, run, stats, demo, the services, and the developer tools
(``bench``, ``evaluate``, ``dev``) whose own flags follow their verb.

Each verb is a module of this package that adds its own options (``add_arguments``) and runs its
own code (``run``); this module only maps verb names to those modules, and does what every verb
shares: logging, the checks of ids and ports, and one ``error: ...`` line on stderr with a
non-zero exit for every user mistake, never a traceback. Each verb imports what it needs when
it runs, so ``emolens --help`` stays fast and the runtime verbs never load the training stack.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from types import ModuleType
from typing import Any

from emolens.cli import (
    aggregate,
    analyze,
    cameras,
    db,
    demo,
    detect,
    gateway,
    ingest,
    report,
    retention,
    run,
    stats,
    tools,
)
from emolens.cli.options import settings_from
from emolens.errors import ConfigError, EmolensError
from emolens.logs import configure as configure_logging
from emolens.observations import MAX_ID_LENGTH

SERVICE_COMMANDS = ("ingest", "detect", "aggregate", "gateway")  # they log at INFO by default

# verb -> its module, in the order `emolens --help` lists them; the developer tools follow
VERBS: dict[str, ModuleType] = {
    "analyze": analyze,
    "run": run,
    "stats": stats,
    "cameras": cameras,
    "retention": retention,
    "report": report,
    "gateway": gateway,
    "db": db,
    "ingest": ingest,
    "detect": detect,
    "aggregate": aggregate,
    "demo": demo,
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emolens")
    except PackageNotFoundError:  # a source tree on sys.path, never installed
        return "unknown"


class _SubParser(argparse.ArgumentParser):
    """Every command takes ``-v`` after its verb too. Its default is SUPPRESS so that a verb
    without it leaves the ``emolens -v`` before the verb standing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.add_help:  # the developer tools (add_help=False) hand every argument to their own parser
            self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE)


_VERBOSE = "log progress events (key=value) to stderr"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emolens", description="Emotion analytics from faces in images and video.")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE)
    parser.add_argument("--version", action="version", version=f"emolens {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)
    for name, verb in VERBS.items():
        p = sub.add_parser(name, help=verb.HELP)
        verb.add_arguments(p)
        p.set_defaults(func=verb.run)
    for name, text in tools.HELP.items():
        p = sub.add_parser(name, help=text, add_help=False)
        p.set_defaults(func=tools.run, passthrough=True)
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    """Values argparse's types let through but no command can use: refused in one line, before
    a camera id no store holds is silently dead-lettered, or gRPC binds port -5 as 65531."""
    for flag in ("camera_id", "zone", "site"):
        value = getattr(args, flag, None)
        shortest = 1 if flag == "camera_id" else 0
        if value is not None and not shortest <= len(value) <= MAX_ID_LENGTH:
            name = flag.replace("_", "-")
            raise ConfigError(f"--{name} must be {shortest}-{MAX_ID_LENGTH} characters, got {len(value)}")
    seq = getattr(args, "seq_start", None)
    if seq is not None and not 0 <= seq < 1 << 63:
        raise ConfigError(f"--seq-start {seq} is outside 0..2^63")
    port = getattr(args, "port", None)
    if port is not None and not 0 <= port < 65536:
        raise ConfigError(f"--port {port} is not a port number (0-65535; 0 picks a free one)")
    idle = getattr(args, "idle_exit", None)
    if idle is not None and not idle > 0:
        raise ConfigError(f"--idle-exit {idle} must be a positive number of seconds")


def _configure_logging(args: argparse.Namespace) -> None:
    """EMOLENS_LOG_LEVEL, else INFO for the services (their events are their record) and
    WARNING for the tools, whose output is their answer; ``-v`` shows INFO at least."""
    settings = settings_from(args)
    level = settings.log_level.upper() or ("INFO" if args.command in SERVICE_COMMANDS else "WARNING")
    if args.verbose and logging.getLevelName(level) > logging.INFO:
        level = "INFO"
    configure_logging(level, settings.log_format)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        _configure_logging(args)
        _check_flags(args)
        code = int(args.func(args))
        sys.stdout.flush()  # a write that fails fails here, not in Python's exit ("Exception ignored")
        return code
    except EmolensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``emolens stats | head``): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno not in _WRITE_ERRORS:
            # not a write (a port taken, a file missing): what happened, not "cannot write"
            print(f"error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", file=sys.stderr)
            return 1
        # a write that failed (a full disk, a file system gone read-only): whatever it was
        # writing, one line; what stdout still buffers is dropped, so the exit is quiet too
        where = exc.filename or "standard output"
        print(f"error: cannot write to {where} ({exc.strerror or exc})", file=sys.stderr)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# the errors of a write that failed; any other OSError reaching main is reported as itself
_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


__all__ = ["SERVICE_COMMANDS", "VERBS", "build_parser", "main"]
