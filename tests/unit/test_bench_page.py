"""docs/benchmarks.md is rewritten by `emolens bench`; the notes written by hand survive."""

import json
from pathlib import Path

from emolens_tools.bench import BENCHMARKS, make_parser, read_notes, render


def _results(fps: float) -> dict[str, object]:
    return {
        "machine": "test box",
        "aggregator": {"frames": 10, "faces_per_frame": 2, "observations_per_s": 100.0, "frames_per_s": 50.0},
        "e2e": {"frames_per_s": fps, "frames": 90, "seconds": 1.0},
    }


def test_a_rerun_rewrites_the_numbers_and_keeps_each_sections_notes():
    first = render(_results(12.5), {"aggregator": "Why it is fast.", "e2e": "Measured beside a CI run.\n\nTwo lines."})
    assert "**12.5 frames/s**" in first
    notes = read_notes(first)
    assert notes == {"aggregator": "Why it is fast.", "e2e": "Measured beside a CI run.\n\nTwo lines."}
    again = render(_results(30.0), notes)
    assert "**30.0 frames/s**" in again and "12.5" not in again
    assert read_notes(again) == notes
    # each block stays in its own section
    assert again.index("Why it is fast.") < again.index("## End to end") < again.index("Two lines.")


def test_notes_of_a_section_no_longer_rendered_are_dropped_not_misplaced():
    page = render(_results(1.0), {"triton": "orphan"})
    assert "orphan" not in page and read_notes(page) == {}


def test_the_committed_page_is_what_render_writes_from_the_committed_results():
    # docs/benchmarks.md is generated: rendering docs/benchmarks.json with the page's own notes
    # gives it back byte for byte, so a change to a section's renderer shows here, not in a rerun
    docs = Path(__file__).resolve().parents[2] / "docs"
    page = (docs / "benchmarks.md").read_text()
    results = json.loads((docs / "benchmarks.json").read_text())
    assert render(results, read_notes(page)) == page


def test_every_benchmark_is_one_entry_chosen_by_its_name_and_rendered_in_the_tables_order():
    names = [b.name for b in BENCHMARKS]
    # every name `emolens bench --only` took before the table still works
    before = [
        "onnx",
        "precision",
        "analyze",
        "small_faces",
        "peers",
        "cameras",
        "triton",
        "aggregator",
        "e2e",
        "analytics",
    ]
    assert sorted(names) == sorted(before)
    for name in names:
        assert make_parser().parse_args(["--only", name]).only == name
    docs = Path(__file__).resolve().parents[2] / "docs"
    results = json.loads((docs / "benchmarks.json").read_text())
    notes = {name: f"note of {name}" for name in names}
    page = render(results, notes)
    positions = [page.index(f"note of {name}") for name in names]
    assert positions == sorted(positions)
    for bench in BENCHMARKS:  # each entry's section is its own: the page of one result holds that one
        alone = render({"machine": "m", bench.name: results[bench.name]}, notes)
        assert "".join(bench.section(results[bench.name])) and read_notes(alone) == {bench.name: notes[bench.name]}
