"""`emolens retention apply`: delete statistics older than the configured ages."""

from __future__ import annotations

import argparse

from emolens.cli.options import existing_store, settings_from

HELP = "delete statistics older than the configured ages (docs/analytics.md)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["apply"])
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")


def run(args: argparse.Namespace) -> int:
    """``emolens retention apply``: delete what is older than the configured ages and say what went."""
    from emolens.store import Policy

    settings = settings_from(args)
    with existing_store(settings) as store:
        removed = store.apply_retention(Policy.from_settings(settings))
    for r in removed:
        print(r.describe())
    return 0
