"""The developer tools' verbs (``emolens bench``, ``evaluate``, ``dev``): they live in the
emolens-tools distribution (tools/ in the checkout), never in the runtime wheel. Each verb names a
function that takes the arguments after it: the ``emolens.tools`` entry-point group when the
tools are installed, else the same table in ``emolens_tools.verbs`` when a checkout's tools/ is
on sys.path. The runtime never imports them by name (an import contract says so)."""

from __future__ import annotations

import argparse
from typing import Any

from emolens.errors import ConfigError

# every argument after these verbs (--help included) goes to the tool's own parser
HELP = {
    "bench": "developer tool: benchmarks -> docs/benchmarks.md (`emolens bench --help`)",
    "evaluate": "developer tool: evaluate the models -> docs/model-card.md (needs the train extra)",
    "dev": "developer tool: install|up|down the real servers on loopback (`emolens dev --help`)",
}

TOOL_GROUP = "emolens.tools"
_NO_TOOLS = (
    "`emolens {verb}` is a developer tool of emolens-tools, which is not installed here: "
    "in a checkout, `make install-dev` (or pip install -e tools)"
)


def _tool(verb: str) -> Any:
    """The function behind a developer verb, loaded only when that verb runs."""
    import importlib
    from importlib.metadata import entry_points

    for entry in entry_points(group=TOOL_GROUP, name=verb):
        return entry.load()
    try:
        target = importlib.import_module("emolens_tools.verbs").VERBS[verb]
    except (ModuleNotFoundError, KeyError) as exc:
        raise ConfigError(_NO_TOOLS.format(verb=verb)) from exc
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def _needs(verb: str, exc: ModuleNotFoundError) -> None:
    """A third-party module a tool needs is not installed: one line that says which and how.
    A missing emolens module is our bug, not the user's, and keeps its traceback."""
    if exc.name and exc.name.split(".")[0] not in ("emolens", "emolens_tools"):
        raise ConfigError(
            f"`emolens {verb}` needs {exc.name!r}, which is not installed here; "
            "install the extras (`make install-dev`, or pip install 'emolens[platform]' -e 'tools[train]')"
        ) from exc


def run(args: argparse.Namespace) -> int:
    main = _tool(args.command)
    try:
        return int(main(args.rest))
    except ModuleNotFoundError as exc:
        _needs(args.command, exc)
        raise
