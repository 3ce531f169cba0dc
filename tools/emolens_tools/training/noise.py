"""Label-noise audit: which training labels does cross-validated evidence contradict?

SMILEsmileD was labelled by one annotator, and some of its "smiles" are not (and the reverse).
The audit embeds every face with a network trained on other data (the FER2013 emotion teacher,
which never saw SMILEsmileD), fits a linear probe on k-1 folds and scores the held-out fold, so
each face's score comes from a probe that never saw its label. A face whose own label gets an
out-of-fold probability below ``threshold`` is a suspect; training down-weights suspects
(``TaskSpec.suspect_weight``) instead of dropping them, and never looks at ``test``.

    python -m emolens_tools.training.noise --task smile --grid /tmp/smile-suspects.png

The grid shows dataset faces, so it is written where you say and never into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from emolens_tools.training.data import DatasetMissingError, load_split
from emolens_tools.training.loop import TEACHER_SNAPSHOTS, load_teacher
from emolens_tools.training.tasks import TASKS, TEACHERS

THRESHOLD = 0.1


@dataclass(frozen=True)
class Audit:
    p_label: np.ndarray  # out-of-fold probability of each image's own label
    suspect: np.ndarray  # bool: p_label < threshold
    probe_accuracy: float  # out-of-fold accuracy of the linear probe against the labels


@torch.no_grad()
def embed(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pooled last-stage features (what the classifier head reads) of uint8 [N, H, W] images."""
    net: Any = model.eval()  # FaceNet or ResFaceNet: norm -> features -> head (pool, flatten, ...)
    out = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i : i + batch_size].astype(np.float32)[:, None])
        out.append(net.head[1](net.head[0](net.features(net.norm(x)))).numpy())
    return np.concatenate(out)


def _fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int, weight_decay: float = 1e-3) -> nn.Linear:
    probe = nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def audit(features: np.ndarray, labels: np.ndarray, classes: int, folds: int = 5, seed: int = 0) -> Audit:
    """Out-of-fold probabilities of each label from linear probes on ``features``."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = torch.from_numpy(((features - mean) / std).astype(np.float32))
    y = torch.from_numpy(labels.astype(np.int64))
    fold = np.random.default_rng(seed).permutation(len(labels)) % folds
    probs = np.zeros((len(labels), classes), np.float32)
    for k in range(folds):
        held = torch.from_numpy(fold == k)
        probe = _fit_probe(x[~held], y[~held], classes)
        with torch.no_grad():
            probs[held.numpy()] = probe(x[held]).softmax(1).numpy()
    p_label = probs[np.arange(len(labels)), labels]
    return Audit(p_label, p_label < THRESHOLD, float((probs.argmax(1) == labels).mean()))


def grid(
    images: np.ndarray, labels: np.ndarray, p_label: np.ndarray, classes: tuple[str, ...], n: int = 48
) -> np.ndarray:
    """The ``n`` most contradicted faces, 8 a row, each captioned with its label and score."""
    order = np.argsort(p_label)[:n]
    side = 96
    tiles = []
    for i in order:
        tile = cv2.cvtColor(cv2.resize(images[i], (side, side)), cv2.COLOR_GRAY2BGR)
        tile = cv2.copyMakeBorder(tile, 0, 16, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        text = f"{classes[labels[i]][:8]} {p_label[i]:.2f}"
        cv2.putText(tile, text, (2, side + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % 8:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[r : r + 8]) for r in range(0, len(tiles), 8)]
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["smile"], default="smile")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--grid", type=Path, help="write a PNG of the most contradicted train faces here")
    parser.add_argument("--json", type=Path, help="write the per-split figures here")
    args = parser.parse_args(argv)
    spec = TASKS[args.task]
    assert spec.teacher is not None
    teacher = load_teacher(TEACHER_SNAPSHOTS / f"{spec.teacher}.pt", TEACHERS[spec.teacher]).model
    report: dict[str, dict[str, object]] = {}
    try:
        for split in ("train", "val"):
            data = load_split(spec, split, args.data_dir)
            result = audit(embed(teacher, data.images), data.labels, len(spec.classes))
            per_class = {c: int((result.suspect & (data.labels == k)).sum()) for k, c in enumerate(spec.classes)}
            report[split] = {
                "images": len(data.labels),
                "probe_accuracy": round(result.probe_accuracy, 4),
                "suspects": int(result.suspect.sum()),
                "suspects_by_label": per_class,
            }
            print(
                f"{split}: {len(data.labels)} faces, out-of-fold probe accuracy {result.probe_accuracy:.1%}, "
                f"{int(result.suspect.sum())} suspects (own label below {THRESHOLD}): {per_class}"
            )
            if split == "train" and args.grid:
                cv2.imwrite(str(args.grid), grid(data.images, data.labels, result.p_label, spec.classes))
                print(f"wrote {args.grid} (dataset faces: keep it out of the repository)")
    except DatasetMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
