"""`emolens db upgrade|current`: the database schema."""

from __future__ import annotations

import argparse

from emolens.cli.options import settings_from
from emolens.settings import redact_url

HELP = "database schema: upgrade to the newest migration, or show the current one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["upgrade", "current"])
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")


def run(args: argparse.Namespace) -> int:
    from emolens.store import SqlStore
    from emolens.store.migrate import current_revision, head_revision

    settings = settings_from(args)
    store = SqlStore(settings.db, create=args.action == "upgrade")  # opening it to write upgrades it
    try:
        print(f"{redact_url(settings.db)}: revision {current_revision(store.engine)} (newest {head_revision()})")
    finally:
        store.close()
    return 0
