"""emolens: emotion analytics from face images and camera streams.

>>> from emolens import Analyzer  # doctest: +SKIP
>>> Analyzer().analyze(image)  # doctest: +SKIP
"""

import os

# OpenCV's environment, set here, before any module imports cv2 (a user's own value wins):
# - it refuses to decode an image of more pixels than OPENCV_IO_MAX_IMAGE_PIXELS (read once, when
#   it loads). Its default, 2**30 pixels, lets a few bytes of a format whose size emolens does not
#   read from the header (TIFF, PNM) allocate gigabytes; 10**8 is well above the default
#   max_pixels (4 * 10**7, Settings.max_pixels).
# - FFmpeg inside it prints its own lines ("moov atom not found") straight to stderr for a broken
#   video, on top of the one error line emolens gives: quiet (OPENCV_FFMPEG_LOGLEVEL=32 shows them).
# - its own logger prints raw lines such as "[ WARN:0@0.713] ... can't open camera by index" (and,
#   on some builds, an [ERROR:...] line for a missing camera) between emolens' key=value lines;
#   emolens reports every failure itself (one error line): only fatal ones pass.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(10**8))
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
# gRPC's C core logs through absl straight to stderr, e.g. "I1207 16:29:03 ... ssl_transport_security.cc:2158]
# Handshake failed ..." for every client that speaks plaintext (or a port scanner) to a TLS gateway,
# which breaks the gateway's one-event-per-line log. The status codes and emolens' own log say what
# a caller needs; set GRPC_VERBOSITY=DEBUG (or INFO, ERROR) to see the C core again. Read when grpc
# loads, so it is set here, before any module imports grpc.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

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
