"""Other packages' pipelines, measured beside emolens in the same run (`emolens bench --only
peers`). Each peer lives in its own virtualenv, built from the package registry, so that none
of its dependencies (TensorFlow for `fer`) enters emolens's; it runs in a subprocess of that
venv's interpreter and answers over a line protocol (see ``fer_worker.py``).

    emolens dev peers              # build the venv (also done by the bench when it is missing)

The venv is ``$EMOLENS_PEERS_DIR/fer``, default ``~/.cache/emolens/peers/fer``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from emolens import logs
from emolens.errors import EmolensError

log = logging.getLogger(__name__)

FER_VERSION = "25.10.3"
# What `fer`'s own pipeline (Haar cascade + TFLite model; `FER()` with its defaults) imports.
# fer declares more (facenet-pytorch and with it torch, for its MTCNN option; moviepy, pandas and
# matplotlib for its video class): installed without them, the venv stays ~1 GB smaller.
# opencv below 5 ships the Haar cascades that `FER()` loads; setuptools below 81 still ships the
# pkg_resources fer imports.
FER_RUNTIME = ("tensorflow-cpu", "opencv-python-headless<5", "pillow", "requests", "setuptools<81")
_WORKER = Path(__file__).with_name("fer_worker.py")


class PeerError(EmolensError, RuntimeError):
    """A peer could not be installed, or its worker failed."""


def peers_dir() -> Path:
    env = os.environ.get("EMOLENS_PEERS_DIR")
    return Path(env).absolute() if env else Path.home() / ".cache" / "emolens" / "peers"


def install_fer(venv: Path | None = None) -> Path:
    """The `fer` package (``FER_VERSION``) and what its pipeline imports, in its own venv
    (default ``peers_dir() / "fer"``), from the package registry; kept when it imports already."""
    venv = venv or peers_dir() / "fer"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(python), "-c", f"import fer, tensorflow, cv2; assert fer.__version__ == {FER_VERSION!r}"],
        capture_output=True,
    )
    if probe.returncode != 0:
        logs.event(log.info, "peer_install", peer="fer", venv=venv)
        pip = [str(python), "-m", "pip", "install", "-q"]
        try:
            subprocess.run([*pip, "--no-deps", f"fer=={FER_VERSION}"], check=True)
            subprocess.run([*pip, *FER_RUNTIME], check=True)
        except subprocess.CalledProcessError as exc:
            raise PeerError(f"could not install fer into {venv}: {exc}") from exc
    return venv


class FerPeer:
    """`fer`'s pipeline in a subprocess of its venv's interpreter (a context manager).

    >>> with FerPeer(install_fer()) as peer:  # doctest: +SKIP
    ...     peer.clip(Path("demo.mp4"))["frames"]
    180
    """

    def __init__(self, venv: Path) -> None:
        python = venv / "bin" / "python"
        if not python.exists():
            raise PeerError(f"no peer venv at {venv}: run `emolens dev peers`")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        self._proc = subprocess.Popen(
            [str(python), str(_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def _ask(self, request: dict[str, str]) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise PeerError(f"the fer worker ended (exit code {self._proc.poll()}) on {request['op']}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise PeerError(f"fer worker: {answer['error']}")
        return answer

    def clip(self, path: Path) -> dict[str, Any]:
        """One pass over a video: frames, faces, seconds (decoding included)."""
        return self._ask({"op": "clip", "path": str(path)})

    def faces(self, npz: Path) -> dict[str, Any]:
        """Faces per frame of ``npz``'s ``frames``: boxes (x0, y0, x1, y1) and emotion scores."""
        return self._ask({"op": "faces", "path": str(npz)})

    def __enter__(self) -> FerPeer:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._proc.poll() is None and self._proc.stdin is not None:
                self._proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._proc.stdin.close()
            self._proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
