"""`emolens gateway`: the partner gRPC API (AnalyzeImage, AnalyzeStream, QueryStats, WatchLive)."""

from __future__ import annotations

import argparse
import sys

from emolens.cli.options import add_model_options, server_extra, settings_from

HELP = "the partner gRPC API: AnalyzeImage, AnalyzeStream, QueryStats, WatchLive"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--db", help="SQL store URL (EMOLENS_DB)")
    p.add_argument("--live", help="live-state URL: memory:// or redis://HOST:PORT/DB (enables WatchLive)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve TLS only (EMOLENS_TLS_CERT)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert (EMOLENS_TLS_KEY)")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (EMOLENS_TLS_CLIENT_CA)")
    p.add_argument("--tokens-file", help="YAML/JSON bearer tokens and scopes (EMOLENS_TOKENS_FILE; docs/api.md)")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow plaintext off loopback (only behind a proxy or mesh that encrypts)",
    )
    p.add_argument("--reflection", action="store_true", help="serve gRPC server reflection (off by default)")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    import signal

    from emolens.live import make_live_state

    with server_extra("gateway"):
        from emolens.services.gateway import LIVE_TIMEOUT_S, AnalyticsService, build_server, check_address
    from emolens.store import make_store

    settings = settings_from(args)
    address = f"{args.host}:{args.port}"
    # before the models load: a refusal should be quick
    check_address(address, tls=bool(settings.tls_cert), auth=bool(settings.tokens_file), insecure=args.insecure)
    store = make_store(settings.db)
    try:
        live = make_live_state(settings.live, timeout_s=LIVE_TIMEOUT_S) if args.live else None
        service = AnalyticsService(settings, store, live)
        server, port = build_server(service, address, insecure=args.insecure, reflection=args.reflection)
    except BaseException:
        store.close()
        raise
    server.start()
    security = "tls" if settings.tls_cert else "plaintext"
    auth = "tokens" if settings.tokens_file else "no auth"
    db = settings.db.split("://")[0]  # the URL may carry a password: the log gets its kind only
    print(
        f"gateway listening on {args.host}:{port} ({security}, {auth}; db {db}, inference {settings.inference})",
        file=sys.stderr,
    )
    signal.signal(signal.SIGTERM, lambda *_: server.stop(grace=2))
    try:
        server.wait_for_termination()
    finally:
        store.close()
    return 0
