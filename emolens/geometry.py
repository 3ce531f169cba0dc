"""Boxes and how much they overlap: the one home of box geometry for detection and tracking.

A box is ``(x0, y0, x1, y1)`` in pixels.

>>> round(iou((0, 0, 10, 10), (5, 0, 15, 10)), 3)
0.333
>>> overlap_of_smaller((0, 0, 10, 10), (2, 2, 6, 6))
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Box = tuple[float, float, float, float]
OverlapOf = Literal["union", "smaller"]


def overlaps(box: Sequence[float], boxes: np.ndarray, of: OverlapOf = "union") -> np.ndarray:
    """Intersection of ``box`` with each row of ``boxes`` [N, 4], divided by the union
    (``of="union"``: IoU) or by the smaller of the two areas (``of="smaller"``).

    A bad ``of`` stays a plain ``ValueError``, not an ``EmolensError``: no setting or input ever
    reaches it, only code, so it is a programming error (mypy rejects it through the
    ``Literal``), and the gRPC boundary reports it as INTERNAL like any other bug."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(b[:, 2], box[2]) - np.maximum(b[:, 0], box[0]), 0, None)
    h = np.clip(np.minimum(b[:, 3], box[3]) - np.maximum(b[:, 1], box[1]), 0, None)
    inter = w * h
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    own = (box[2] - box[0]) * (box[3] - box[1])
    if of == "union":
        denom = areas + own - inter
    elif of == "smaller":
        denom = np.minimum(areas, own)
    else:
        raise ValueError(f"overlap of {of!r}: expected 'union' or 'smaller'")
    return np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)


def centre(box: Sequence[float]) -> np.ndarray:
    """The centre (x, y) of a box (x0, y0, x1, y1), as float64.

    >>> centre((0, 0, 10, 20)).tolist()
    [5.0, 10.0]
    """
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def holds(box: Sequence[float], x: float, y: float) -> bool:
    """Whether the box (x0, y0, x1, y1), edges included, holds the point (x, y): the rule by
    which a detection "finds" a face pasted at that centre.

    >>> holds((0, 0, 10, 10), 10, 5), holds((0, 0, 10, 10), 10.5, 5)
    (True, False)
    """
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes."""
    return float(overlaps(a, np.asarray([b]), "union")[0])


def overlap_of_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over the smaller box's area: 1.0 when one box holds the other."""
    return float(overlaps(a, np.asarray([b]), "smaller")[0])
