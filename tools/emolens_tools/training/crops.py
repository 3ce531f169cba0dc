"""Training crops as the serving pipeline will cut them ("serving views").

The pipeline never sees a dataset crop: it sees a face somewhere in a frame, finds it with
the detector and cuts it again with the model's crop box. The detector's box does not fall on
the same spot of every face the way the dataset's own framing did, so the re-cut crop is
shifted and scaled a little, and resampled twice. Measured on `val`, that cost the emotion
model about 3 points. Training on a share of such re-cut crops teaches the model that framing.

Each training crop is upscaled, pasted at a random place over one of several photos that
scikit-image ships, found by the production detector, and cut by ``align_face``. The photos
are disjoint from the ones ``emolens evaluate`` (tools/emolens_tools/evaluation/run.py) pastes test faces on.
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from emolens import logs
from emolens.vision.align import align_face
from emolens_tools.training.canvas import detection_at, place_on_canvas

log = logging.getLogger(__name__)

# Never the backgrounds of tools/emolens_tools/evaluation/run.py (coffee, chelsea, rocket, hubble_deep_field,
# immunohistochemistry, coins, brick, gravel) and never a photo with a face in it.
TRAIN_BACKGROUNDS = ("camera", "moon", "text", "page", "grass", "clock", "cell", "retina", "colorwheel")
FRAME = (480, 640)
_CHUNK = 400


def photo_frames(names: tuple[str, ...], native: bool = False) -> list[np.ndarray]:
    """640x480 BGR frames made from photos scikit-image ships (gray, RGB or RGBA), or with
    ``native`` the photos at the size scikit-image ships them."""
    from skimage import data

    out = []
    for name in names:
        im = getattr(data, name)()
        if im.ndim == 3 and im.shape[2] == 4:
            im = im[..., :3]
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) if im.ndim == 2 else cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
        out.append(im if native else cv2.resize(im, (FRAME[1], FRAME[0])))
    return out


def _views_chunk(args: tuple[np.ndarray, np.ndarray, int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    images, crop_box, upscale, seed, detector_name = args
    from emolens.vision.detect import make_detector

    detector = make_detector(detector_name)
    bgs = photo_frames(TRAIN_BACKGROUNDS)
    rng = np.random.default_rng(seed)
    size = images.shape[1]
    side = size * upscale
    views, found = images.copy(), np.zeros(len(images), bool)
    for i, crop in enumerate(images):
        oy, ox = int(rng.integers(0, FRAME[0] - side)), int(rng.integers(0, FRAME[1] - side))
        frame = place_on_canvas(crop, upscale, bgs[int(rng.integers(len(bgs)))], oy, ox)
        det = detection_at(detector.detect(frame), ox + side / 2, oy + side / 2)
        if det is not None:
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            views[i] = align_face(gray, det.box, crop_box, size)
            found[i] = True
    return views, found


def serving_views(
    images: np.ndarray,
    crop_box: np.ndarray,
    upscale: int,
    seed: int,
    cache: Path | None = None,
    workers: int = 2,
    detector: str = "blazeface",
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-cut every crop of ``images`` [N, S, S] the way the pipeline would.

    Returns (views [N, S, S] uint8, found [N] bool); where the detector missed, the view is
    the original crop. With ``cache``, the result is kept there and reused while the images,
    crop box, upscale and seed are the same.
    """
    key = hashlib.sha256(
        images.tobytes() + np.asarray(crop_box, np.float32).tobytes() + f"{upscale}/{seed}/{detector}".encode()
    ).hexdigest()[:16]
    if cache is not None and cache.exists():
        with np.load(cache) as saved:
            if str(saved["key"]) == key:
                return saved["views"], saved["found"]
    chunks = [
        (images[i : i + _CHUNK], np.asarray(crop_box, np.float32), upscale, seed * 1000 + i // _CHUNK, detector)
        for i in range(0, len(images), _CHUNK)
    ]
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=len(images), desc="serving views", unit="face", disable=not progress)
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_views_chunk, chunks):
                parts.append(part)
                bar.update(len(part[0]))
    else:
        for chunk in chunks:
            parts.append(_views_chunk(chunk))
            bar.update(len(parts[-1][0]))
    bar.close()
    views = np.concatenate([p[0] for p in parts])
    found = np.concatenate([p[1] for p in parts])
    logs.event(log.info, "serving_views", faces=len(images), found=round(found.mean(), 3))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, views=views, found=found, key=key)
    return views, found
