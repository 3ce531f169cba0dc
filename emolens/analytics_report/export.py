"""``--format csv``: the tables behind the plots, one CSV file each, in one zip file (one file to
mail or attach, like the HTML report; every spreadsheet opens the CSVs inside). A suppressed or
not computable figure is an empty cell, never a zero."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

from emolens.analytics_report.model import ReportData, Table, all_tables


def table_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([["" if v is None else v for v in row] for row in table.rows])
    return buf.getvalue()


def write_csv_zip(data: ReportData, path: Path) -> list[str]:
    """Write ``path`` (a .zip) with ``<table>.csv`` for every table; returns the names inside."""
    names = []
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for table in all_tables(data):
            name = f"{table.name}.csv"
            zf.writestr(name, table_csv(table))
            names.append(name)
    return names
