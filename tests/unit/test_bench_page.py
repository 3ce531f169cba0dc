"""docs/benchmarks.md is rewritten by `emolens bench`; the notes written by hand survive."""

from emolens_tools.bench import read_notes, render


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
