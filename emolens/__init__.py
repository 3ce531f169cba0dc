"""emolens: emotion analytics from face images and camera streams.

>>> from emolens import Analyzer  # doctest: +SKIP
>>> Analyzer().analyze(image)  # doctest: +SKIP
"""

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
