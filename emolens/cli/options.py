"""What several verbs share: the settings built from their flags, the model options, the store
they read. (The entry point, :mod:`emolens.cli`, only maps verb names to their modules.)"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from emolens.errors import MissingExtra
from emolens.settings import Settings

# what the `server` extra brings: the gateway's gRPC API and every service's health endpoint
SERVER_MODULES = ("grpc", "grpc_health", "grpc_reflection")

OPEN_TIMEOUT_HELP = (
    "a live source that never opens gives up after this many seconds with an error; once open, drops are "
    "retried forever (EMOLENS_SOURCE_OPEN_TIMEOUT_S, default 30; 0 = retry forever)"
)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        inference=getattr(args, "inference", None),
        detector=getattr(args, "detector", None),
        detect_interval=getattr(args, "detect_interval", None),
        min_face_px=getattr(args, "min_face_px", None),
        classify_interval=getattr(args, "classify_interval", None),
        fps=getattr(args, "fps", None),
        db=getattr(args, "db", None),
        preprocess=getattr(args, "preprocess", None),
        threads=getattr(args, "threads", None),
        k_anonymity=getattr(args, "k", None),
        live=getattr(args, "live", None),
        bus=getattr(args, "bus", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        tokens_file=getattr(args, "tokens_file", None),
        source_open_timeout_s=getattr(args, "open_timeout", None),
    )


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The detector and classifier options of every verb that analyses faces."""
    p.add_argument("--inference", help="onnx://PATH or triton://HOST:PORT (EMOLENS_INFERENCE)")
    p.add_argument("--detector", choices=["auto", "blazeface", "blazeface-full", "blazeface-short", "haar"])
    p.add_argument("--preprocess", choices=["none", "auto", "clahe"])
    p.add_argument(
        "--detect-interval",
        type=float,
        metavar="SECONDS",
        help="video: full face detection every SECONDS, faces followed between; 0 = every frame "
        "(EMOLENS_DETECT_INTERVAL, default 0.33)",
    )
    p.add_argument(
        "--min-face-px",
        type=int,
        metavar="PIXELS",
        help="smallest face width the detector looks for; HD frames get BlazeFace over tiles for it, "
        "at a cost (docs/benchmarks.md); 0 = the whole frame only (EMOLENS_MIN_FACE_PX, default 32)",
    )
    p.add_argument(
        "--classify-interval",
        type=float,
        metavar="SECONDS",
        help="video: a followed face is classified again after SECONDS (or when it moves a lot), "
        "keeping its last classification between; 0 = every frame (EMOLENS_CLASSIFY_INTERVAL, default 0.33)",
    )
    p.add_argument(
        "--threads",
        type=int,
        help="ONNX Runtime and BlazeFace threads (EMOLENS_THREADS, default 0 = one per core; BlazeFace at most 4)",
    )


@contextmanager
def existing_store(settings: Settings) -> Iterator[Any]:
    """The store at ``settings.db`` for reading: never created, refused without its schema,
    closed on the way out."""
    from emolens.store import SqlStore

    store = SqlStore(settings.db, create=False)  # a reader never creates a database
    try:
        store.require_schema()
        yield store
    finally:
        store.close()


def parse_verb(verb: ModuleType, argv: list[str]) -> argparse.Namespace:
    """``argv`` read by the options of ``verb`` (a module of this package) alone: how one verb
    runs another (``emolens demo`` runs analyze, run and stats)."""
    parser = argparse.ArgumentParser(prog=f"emolens {verb.__name__.rsplit('.', 1)[-1]}")
    verb.add_arguments(parser)
    return parser.parse_args(argv)


@contextmanager
def server_extra(verb: str) -> Iterator[None]:
    """Around the import of a service: without the ``server`` extra (gRPC), one line that says
    how to get it, before any work, instead of a traceback when the service starts serving."""
    try:
        # every service serves gRPC health (ingest's only once it runs), the gateway its API too
        import grpc  # noqa: F401
        from grpc_health.v1 import health  # noqa: F401

        yield
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in SERVER_MODULES:
            raise MissingExtra(f"`emolens {verb}`", "server", exc.name) from exc
        raise
