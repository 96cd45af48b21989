"""``cityeye api``: serve the central API with uvicorn."""

from __future__ import annotations

import argparse
import json
import socket
from pathlib import Path

from cityeye.api.ingest import DEFAULT_TOPIC_FILTER
from cityeye.api.store import Store


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "api",
        help="run the central API (MQTT ingest, drivers, operators, IOC)",
        description="Serve the central API: ingest edge events from MQTT into the database (migrated at "
        "start) and answer drivers (/v1/parking/...), operators (/v1/cameras, history, traffic, /v1/live), "
        "the IOC (/ngsi-ld/v1/entities) and monitoring (/metrics, /healthz, /readyz); see /docs.",
    )
    p.add_argument("--config", required=True, type=Path, help="site configuration (YAML)")
    p.add_argument("--host", help="listen address (default: api.host of the configuration)")
    p.add_argument("--port", type=int, help="listen port, 0 = any free port (default: api.port)")
    p.add_argument("--no-ingest", action="store_true", help="serve the database only, do not connect to MQTT")
    p.add_argument(
        "--mqtt-filter",
        help=f"topic filter to consume (default: api.mqtt_topic_filter, {DEFAULT_TOPIC_FILTER})",
    )
    p.add_argument(
        "--share-group",
        help="consume through the MQTT shared subscription $share/<group>/... "
        "(several API instances sharing one database)",
    )
    p.add_argument(
        "--mqtt-protocol", choices=("5", "3.1.1"), help="MQTT protocol version (default: mqtt.protocol, 5)"
    )
    p.add_argument(
        "--client-id",
        help="fixed MQTT client id; with --session-expiry the broker keeps this consumer's messages while it "
        "restarts (each replica needs its own id)",
    )
    p.add_argument(
        "--session-expiry",
        type=int,
        default=None,
        metavar="S",
        help="seconds the broker keeps the session after a disconnect (3600 with --client-id, else 0)",
    )
    p.set_defaults(func=run)

    db = sub.add_parser(
        "db",
        help="database schema and API keys of the central API",
        description="Manage the API database named by api.database_url: schema migrations (Alembic) and "
        "stored API keys. Output is JSON.",
    )
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser(
        "upgrade", help="upgrade the schema to the newest revision (what `cityeye api` does)"
    )
    up.add_argument("--config", required=True, type=Path, help="site configuration (YAML)")
    up.set_defaults(func=db_upgrade)
    cur = dbsub.add_parser("current", help="print the schema revision of the database and of this code")
    cur.add_argument("--config", required=True, type=Path, help="site configuration (YAML)")
    cur.set_defaults(func=db_current)
    key = dbsub.add_parser(
        "create-key", help="create an API key in the database and print it once (e.g. the first admin key)"
    )
    key.add_argument("--config", required=True, type=Path, help="site configuration (YAML)")
    key.add_argument("--name", required=True, help="who or what uses the key")
    key.add_argument("--role", required=True, choices=("operator", "admin"))
    key.set_defaults(func=db_create_key)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so that a busy port is a clear error and port 0 has a number to print."""
    from cityeye.cli import UsageError

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is out of range; give 0..65535 (0 picks a free port)")
    try:
        family, _, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"cannot resolve listen address {host!r}: {exc.strerror}; give an IP or host name"
        ) from None
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP, and
    # without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror} (is another process using the port? "
            "choose another with --port)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from cityeye.api.app import create_app
    from cityeye.cli import UsageError
    from cityeye.config import load_config

    cfg = load_config(args.config)
    host = args.host or cfg.api.host
    port = cfg.api.port if args.port is None else args.port
    expiry = args.session_expiry if args.session_expiry is not None else (3600 if args.client_id else 0)
    if expiry < 0:
        raise UsageError(f"--session-expiry {expiry}: give seconds >= 0")
    app = create_app(
        cfg,
        ingest=not args.no_ingest,
        topic_filter=args.mqtt_filter,
        share_group=args.share_group,
        mqtt_protocol=args.mqtt_protocol,
        client_id=args.client_id,
        session_expiry_s=expiry,
    )
    sock = _listen(host, port)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    print(f"cityeye api: serving site {cfg.site} on http://{shown}:{bound[1]}/ (docs at /docs)", flush=True)
    # log_config=None: uvicorn's loggers propagate to the root handler cityeye set up on stderr.
    # A bounded graceful stop: open live streams (SSE) would otherwise hold a Ctrl-C forever.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0 if server.started else 1


def _store(args: argparse.Namespace) -> Store:
    from cityeye.config import load_config

    return Store(load_config(args.config).api.database_url)


def db_upgrade(args: argparse.Namespace) -> int:
    from cityeye.api.migrate import current

    store = _store(args)
    try:
        before = current(store.engine)
        after = store.migrate()
    finally:
        store.close()
    print(json.dumps({"database": store.engine.url.render_as_string(), "from": before, "to": after}))
    return 0


def db_current(args: argparse.Namespace) -> int:
    from cityeye.api.migrate import current, head

    store = _store(args)
    try:
        rev = current(store.engine)
    finally:
        store.close()
    print(json.dumps({"database": store.engine.url.render_as_string(), "current": rev, "head": head()}))
    return 0 if rev == head() else 1


def db_create_key(args: argparse.Namespace) -> int:
    from cityeye.api.auth import hash_key, new_key

    store = _store(args)
    try:
        store.migrate()
        key = new_key()
        rec = store.add_key(args.name, args.role, hash_key(key), key[:10])
    finally:
        store.close()
    print(json.dumps({"id": rec.id, "name": rec.name, "role": rec.role, "key": key}))
    return 0
