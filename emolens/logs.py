"""Structured logs: one line per event. The code logs through :func:`event`, which passes the
event's fields as data (``extra``) and writes them as ``event=NAME key=value ...``; this module
writes each record as that line behind ``ts=... level=... logger=...`` (``text``), or as one JSON
object whose fields are those pairs (``json``, for log pipelines that index fields), read from
the record, never parsed back out of its text.

    >>> import io, json, logging
    >>> log, out = logging.getLogger("emolens.example"), io.StringIO()
    >>> handler = logging.StreamHandler(out)
    >>> handler.setFormatter(JsonFormatter())
    >>> log.addHandler(handler); log.setLevel(logging.INFO); log.propagate = False
    >>> event(log.info, "ready", stage="detector", ready=True, reason="a b")
    >>> line = json.loads(out.getvalue())
    >>> line["event"], line["stage"], line["ready"], line["reason"], line["level"]
    ('ready', 'detector', True, 'a b', 'INFO')
    >>> line["message"]
    "event=ready stage=detector ready=True reason='a b'"
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from typing import IO, Any

TEXT_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
_BARE = re.compile(r"[^\s'\"=]+")  # a value written as is; anything else is quoted as repr() quotes it


def text_value(value: object) -> str:
    """A field's value in the text line: numbers and single words as they are, anything with a
    space, a quote or an ``=`` (or nothing at all) quoted.

    >>> text_value(3), text_value(0.25), text_value("cam-1"), text_value("no answer"), text_value("")
    ('3', '0.25', 'cam-1', "'no answer'", "''")
    """
    text = value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else repr(text)


def event(emit: Callable[..., None], name: str, /, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` through ``emit`` (a logger's ``info``,
    ``warning``, ...): the text is ``event=NAME key=value ...`` and the fields travel with the
    record as data, so a formatter (:class:`JsonFormatter`) reads them as they were given.
    ``exc_info`` is logging's own (a traceback), not a field."""
    logger = getattr(emit, "__self__", None)
    level = _LEVELS.get(getattr(emit, "__name__", ""), logging.INFO)
    if isinstance(logger, logging.Logger) and not logger.isEnabledFor(level):
        return
    traceback = {"exc_info": fields.pop("exc_info")} if "exc_info" in fields else {}
    text = " ".join([f"event={text_value(name)}", *(f"{k}={text_value(v)}" for k, v in fields.items())])
    emit("%s", text, extra={"event": name, "fields": fields}, stacklevel=2, **traceback)


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _plain(value: object) -> object:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts``, ``level``, ``logger``, the event and its fields as the
    code passed them (:func:`event`), the whole ``message``, and ``exc`` for a traceback. A
    record logged otherwise (another library's) carries its message only."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        out: dict[str, Any] = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name}
        name = getattr(record, "event", None)
        if name is not None:
            out["event"] = name
            for key, value in getattr(record, "fields", {}).items():
                out.setdefault(key, _plain(value))
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
