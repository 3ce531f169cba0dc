"""The report in a real headless browser (Debian's chromium, driven over the DevTools protocol on
a pipe: tests/chromium.py): it loads from a file with no console error, no blocked or failed
load and no request for anything but itself, and every plot is drawn with a real size and marks."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime

import pytest

from emolens.analytics_report import collect, render
from tests.chromium import find_chromium, open_page
from tests.report_fixture import FixtureSource

PLOTS = """JSON.stringify(Array.from(document.querySelectorAll('svg.plot')).map(s => {
  const box = s.getBoundingClientRect();
  return [s.dataset.plot, Math.round(box.width), Math.round(box.height),
          s.querySelectorAll('rect, polyline, circle').length];
}))"""
TABLES = "document.querySelectorAll('details.data table tbody tr').length"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        from emolens_tools.dev import install

        try:
            install()  # as `make test` does through `emolens dev install`
        except Exception as exc:  # any failure to install means: skip, and say why
            pytest.skip(f"chromium is not installed and apt-get could not install it ({exc})")
        found = find_chromium()
    if not found:
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    return found


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    data = collect(FixtureSource(), datetime(2026, 3, 2), datetime(2026, 3, 16), "zone", 5, UTC)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render(data, "fixture"), encoding="utf-8")
    return path


def test_report_renders_in_chromium_without_errors_and_with_every_plot(chromium, report_file):
    import json

    page = open_page(report_file, [PLOTS, TABLES], browser=chromium)
    assert page.errors == []
    assert page.requests == [report_file.resolve().as_uri()]  # itself, nothing else
    plots = json.loads(page.values[PLOTS])
    names = [p[0] for p in plots]
    assert {"change", "emotion-mix", "visitors", "dwell", "busiest-hours", "smile-heatmap"} <= set(names)
    assert names.count("smile-heatmap") == 4
    for name, width, height, marks in plots:
        assert width > 600 and height > 50, (name, width, height)  # laid out, not collapsed
        assert marks >= 4, name  # bars, lines or cells were drawn
    assert page.values[TABLES] > 100  # the tables behind the plots are in the page


def test_the_error_check_sees_what_a_broken_report_would_do(chromium, report_file, tmp_path):
    """Controls: a script and an external image are blocked by the report's own policy and
    reported, so an empty error list above means something."""
    html = report_file.read_text()
    broken = tmp_path / "broken.html"
    broken.write_text(html.replace("</main>", '<script>console.error("boom")</script></main>'))
    assert any(
        "Content Security Policy" in e or "Content-Security-Policy" in e
        for e in open_page(broken, browser=chromium).errors
    )
    fetching = tmp_path / "fetching.html"
    fetching.write_text(html.replace("</main>", '<img src="https://example.invalid/x.png" alt=""></main>'))
    page = open_page(fetching, browser=chromium)
    assert page.errors, "an external image must be reported"
    no_policy = tmp_path / "no-policy.html"
    no_policy.write_text(
        html.replace('<meta http-equiv="Content-Security-Policy"', '<meta name="x"').replace(
            "</main>", '<script>console.error("boom"); undefined_function()</script></main>'
        )
    )
    errors = open_page(no_policy, browser=chromium).errors
    assert any("boom" in e for e in errors) and any("exception" in e for e in errors)
