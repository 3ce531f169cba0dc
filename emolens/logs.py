"""Structured logs: one line per event. The code logs ``event=NAME key=value ...``; this module
writes each record as that line behind ``ts=... level=... logger=...`` (``text``), or as one JSON
object whose fields are those pairs (``json``, for log pipelines that index fields).

    >>> import json, logging
    >>> record = logging.makeLogRecord(
    ...     {"name": "emolens.stages", "levelname": "INFO", "msg": "event=ready stage=%s reason=%r",
    ...      "args": ("detector", "a b")})
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["event"], line["stage"], line["reason"], line["level"]
    ('ready', 'detector', 'a b', 'INFO')
"""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
from typing import IO, Any

TEXT_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
# key=value, the value bare or quoted as %r writes it
_PAIR = re.compile(r"""(\w+)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S+)""")


def _value(raw: str) -> Any:
    if raw[:1] in ("'", '"'):
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    return raw


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, the message's ``key=value`` pairs
    as fields (quoted values unquoted), the whole ``message``, and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name}
        for key, raw in _PAIR.findall(message):
            out.setdefault(key, _value(raw))
        out["message"] = message
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class _OthersAtWarning(logging.Filter):
    """Other libraries' INFO lines (kafka-python's connection chatter, ...) are not events of
    ours: below DEBUG they pass from WARNING up only."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        # ours: the runtime (emolens.*) and its developer tools (emolens_tools.*)
        if record.name.split(".")[0] in ("emolens", "emolens_tools"):
            return True
        return self.level <= logging.DEBUG or record.levelno >= logging.WARNING


def configure(level: str, fmt: str = "text", stream: IO[str] | None = None, *, force: bool = False) -> None:
    """Log emolens' events at ``level`` or above to ``stream`` (stderr) in ``fmt`` (``text`` or
    ``json``). Like ``logging.basicConfig``, a process whose logging is configured already (a
    host application, pytest) is left alone unless ``force``."""
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    numeric = logging.getLevelName(level.upper())
    handler.addFilter(_OthersAtWarning(numeric))
    logging.basicConfig(level=numeric, handlers=[handler], force=force)
