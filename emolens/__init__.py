"""emolens: emotion analytics from face images and camera streams.

>>> from emolens import Analyzer  # doctest: +SKIP
>>> Analyzer().analyze(image)  # doctest: +SKIP
"""

import os

# OpenCV refuses to decode an image of more pixels than this (it reads the variable once, when it
# loads, so it is set here, before any module imports cv2). Its default, 2**30 pixels, lets a
# few bytes of a format whose size emolens does not read from the header (TIFF, PNM) allocate
# gigabytes; 10**8 is well above the default max_pixels (4 * 10**7, Settings.max_pixels).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(10**8))

from emolens.errors import EmolensError, InputError
from emolens.results import EMOTIONS, FaceResult
from emolens.settings import Settings

__all__ = ["EMOTIONS", "Analyzer", "EmolensError", "FaceResult", "InputError", "Settings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Analyzer pulls in ONNX Runtime and OpenCV; import it on first use only.
    if name == "Analyzer":
        from emolens.pipeline import Analyzer

        return Analyzer
    raise AttributeError(name)
