"""Accuracy against face size and head yaw, through the whole pipeline: the `test` splits'
faces drawn as head-and-shoulder figures into 1280x720 frames (``emolens_tools.testframes.cctv_scenes``)
at each width, found by the production detector (still images: no tracking), classified, and
matched back to the face that was drawn. The model card's "Small faces" tables, and the
reason for the quality gate's smallest usable width (``emolens.vision.quality.MIN_USABLE_WIDTH``).

    python -m emolens_tools.evaluation.small_faces --frames 40   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from emolens.inference import EMOTION, SMILE
from emolens.pipeline import Analyzer
from emolens.results import EMOTIONS, FaceResult
from emolens.settings import Settings
from emolens_tools.testframes import Scene, SceneFace, cctv_scenes

WIDTHS = (24, 32, 40, 48, 64)
# The reference: a face this wide is classified as well as a large one (at 128 px only one
# figure fits a frame in four, too few faces to compare)
FULL_SIZE = 96
FRAME = (1280, 720)
YAW_BINS = ((0, 15), (15, 30), (30, 45), (45, 90))
FRAMES = 100  # frames per width for the model card: up to 400 faces, 200 of each dataset


@dataclass
class Tally:
    """Faces drawn, found, usable (found and not low quality), and correct among the found."""

    drawn: int = 0
    found: int = 0
    usable: int = 0
    correct: int = 0
    correct_usable: int = 0

    def add(self, face: FaceResult | None, right: bool) -> None:
        self.drawn += 1
        if face is None:
            return
        self.found += 1
        self.correct += right
        if not face.low_quality:
            self.usable += 1
            self.correct_usable += right

    def accuracy(self) -> float | None:
        return self.correct / self.found if self.found else None


@dataclass
class SmallFaces:
    frames: int
    by_width: dict[str, dict[int, Tally]] = field(default_factory=dict)
    by_yaw: dict[str, dict[str, Tally]] = field(default_factory=dict)


def match(faces: Sequence[FaceResult], drawn: SceneFace) -> FaceResult | None:
    """The found face whose box centre lies within half a face width of the drawn face's centre."""
    for f in faces:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        w = f.box[2] - f.box[0]
        near = abs(cx - drawn.centre[0]) < drawn.width / 2 and abs(cy - drawn.centre[1]) < drawn.width / 2
        if near and 0.5 < w / drawn.width < 2.0:
            return f
    return None


def _right(face: FaceResult, drawn: SceneFace) -> bool:
    if drawn.model == SMILE:
        return (face.smile >= 0.5) == bool(drawn.label)
    return face.label == EMOTIONS[drawn.label]


def measure(
    analyzer: Analyzer, frames: int, widths: Sequence[int] = WIDTHS, data_dir: Path | None = None
) -> SmallFaces:
    out = SmallFaces(frames)
    for model in (SMILE, EMOTION):
        out.by_width[model] = {}
        out.by_yaw[model] = {f"{lo}-{hi}" if hi < 90 else f">{lo}": Tally() for lo, hi in YAW_BINS}
    for width in tqdm([*widths, FULL_SIZE], desc="widths", file=sys.stderr):
        tallies = {SMILE: Tally(), EMOTION: Tally()}
        scenes: list[Scene] = cctv_scenes(FRAME, width, frames, data_dir=data_dir, split="test")
        for scene in scenes:
            found = analyzer.analyze(scene.image)
            for drawn in scene.faces:
                face = match(found, drawn)
                right = face is not None and _right(face, drawn)
                tallies[drawn.model].add(face, right)
                if width == FULL_SIZE and face is not None and face.yaw_deg is not None:
                    yaw = abs(face.yaw_deg)
                    for (lo, hi), tally in zip(YAW_BINS, out.by_yaw[drawn.model].values(), strict=True):
                        if lo <= yaw < hi or (hi == 90 and yaw >= lo):
                            tally.add(face, right)
        for model in (SMILE, EMOTION):
            out.by_width[model][width] = tallies[model]
    return out


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def render(result: SmallFaces) -> str:
    """The model card's tables (Markdown)."""
    lines = [
        f"Faces of the `test` splits drawn as head-and-shoulder figures into {FRAME[0]}x{FRAME[1]} frames "
        f"(`emolens_tools.testframes.cctv_scenes`, {result.frames} frames per width, up to 4 faces each), "
        "found by the production detector as stills (default settings: `min_face_px` 32), classified, "
        f"and matched back. Accuracy counts the found faces; {FULL_SIZE} px is the reference (fewer figures "
        "fit a frame at that size, so it holds a few faces less).",
        "",
        "| face width | smile found | smile usable | smile accuracy "
        "| emotion found | emotion usable | emotion accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for width in result.by_width[SMILE]:
        s, e = result.by_width[SMILE][width], result.by_width[EMOTION][width]
        lines.append(
            f"| {width} px | {s.found}/{s.drawn} | {_pct(s.usable / s.drawn if s.drawn else None)} | "
            f"{_pct(s.accuracy())} | {e.found}/{e.drawn} | {_pct(e.usable / e.drawn if e.drawn else None)} | "
            f"{_pct(e.accuracy())} |"
        )
    lines += [
        "",
        f"Against the estimated head yaw (from the detector's landmarks), faces at {FULL_SIZE} px:",
        "",
        "| yaw (degrees) | smile n | smile accuracy | emotion n | emotion accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in result.by_yaw[SMILE]:
        s, e = result.by_yaw[SMILE][name], result.by_yaw[EMOTION][name]
        lines.append(f"| {name} | {s.found} | {_pct(s.accuracy())} | {e.found} | {_pct(e.accuracy())} |")
    return "\n".join(lines)


def to_json(result: SmallFaces) -> dict[str, object]:
    return {
        "frames": result.frames,
        "by_width": {m: {str(w): asdict(t) for w, t in v.items()} for m, v in result.by_width.items()},
        "by_yaw": {m: {k: asdict(t) for k, t in v.items()} for m, v in result.by_yaw.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emolens_tools.evaluation.small_faces", description=__doc__)
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames per width (up to 4 faces each)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)
    result = measure(Analyzer(Settings.from_env()), args.frames)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(to_json(result), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
