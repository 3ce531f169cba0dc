"""Loading the shared datasets into (images, labels) arrays per split."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emolens_tools.training.tasks import TaskSpec


class DatasetMissingError(FileNotFoundError):
    """The shared data directory or a dataset file in it is absent."""


def data_dir() -> Path:
    """Where the shared datasets live: ``$EMOLENS_DATA_DIR``, else ``shared/data`` beside the git
    checkout the current directory is in (``<top level>/../shared/data``), else ``../shared/data``
    from the current directory. Never relative to where the package is installed."""
    env = os.environ.get("EMOLENS_DATA_DIR")
    if env:
        return Path(env)
    here = Path.cwd()
    top = next((p for p in (here, *here.parents) if (p / ".git").exists()), here)
    return top.parent / "shared" / "data"


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, size, size]
    labels: np.ndarray  # int64 [N]
    extra_labels: np.ndarray | None = None  # FER+ majority labels (emotion only), -1 unknown


def load_split(spec: TaskSpec, split: str, root: Path | None = None, native: bool = False) -> Split:
    """Images of one split at the model's input size (``native``: as stored), with their labels."""
    path = (root or data_dir()) / spec.dataset
    if not path.exists():
        raise DatasetMissingError(f"{path} not found: set EMOLENS_DATA_DIR to the folder holding {spec.dataset}")
    with np.load(path) as archive:
        mask = archive["split"] == split
        if spec.name == "emotion" and split == "train":
            # 173 FER+ "not a face" rows (and 2 orphans) are the lossless=False images.
            mask &= archive["lossless"]
        x = archive["x"][mask]
        y = archive["y"][mask].astype(np.int64)
        extra = archive["y_ferplus"][mask].astype(np.int64) if "y_ferplus" in archive.files else None
    if not native:
        x = resized(x, spec.size)
    return Split(images=x, labels=y, extra_labels=extra)


def resized(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, H, W] images at ``side`` x ``side`` (area interpolation); as they are if already so."""
    if images.shape[1] == side:
        return images
    return np.stack([cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA) for im in images])
