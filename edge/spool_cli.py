"""`cityeye spool status` (the edge health check) and `cityeye acl` (a broker ACL for a site file).

``spool status`` reads the spool files of a running (or stopped) worker without disturbing it
and says, as JSON and by its exit code, whether each camera's worker is alive and how much is
waiting or was lost. Liveness comes from the spool itself: the worker queues a health event
every ``health_interval_s`` even while the broker is away, so a spool that has not been
written for a few intervals belongs to a worker that is hung or gone. That makes it usable
as a Docker health check or a systemd timer without any port or extra process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from cityeye.config import load_config
from cityeye.edge.spool import SpoolError, read_stats, spool_file
from cityeye.events.topics import ROOT


def _status(args: argparse.Namespace) -> int:
    from cityeye.cli import UsageError

    cfg = load_config(args.config)
    cams = [c.id for c in cfg.cameras]
    if args.camera:
        unknown = sorted(set(args.camera) - set(cams))
        if unknown:
            raise UsageError(
                f"--camera {', '.join(unknown)}: not in {args.config} (cameras: {', '.join(cams)})"
            )
        cams = [c for c in cams if c in args.camera]
    if not cams:
        raise UsageError(f"{args.config} lists no cameras; there is no spool to check")
    spool_dir = cfg.mqtt.spool.dir
    if spool_dir is None:  # load_config always resolves it; kept for configurations built in code
        raise UsageError(f"{args.config}: no mqtt.spool.dir")
    max_silence = args.max_silence_s if args.max_silence_s is not None else 3 * cfg.health_interval_s + 30
    now = time.time()
    report: dict[str, object] = {}
    problems: list[str] = []
    for cam in cams:
        path = spool_file(spool_dir, cfg.site, cam)
        try:
            stats = read_stats(path)
        except SpoolError as exc:
            problems.append(f"{cam}: {exc}")
            report[cam] = {"spool": str(path), "error": str(exc)}
            continue
        entry = {"spool": str(path), **stats.as_dict(now)}
        report[cam] = entry
        silent = None if stats.last_put is None else now - stats.last_put
        if silent is None or silent > max_silence:
            problems.append(
                f"{cam}: nothing queued for {'ever' if silent is None else f'{silent:.0f} s'} "
                f"(> {max_silence:.0f} s): the worker is stopped or hung"
            )
        age = entry["oldest_age_s"]
        if args.max_backlog_s is not None and isinstance(age, float) and age > args.max_backlog_s:
            problems.append(
                f"{cam}: the oldest queued event waits for {age:.0f} s (> {args.max_backlog_s:.0f} s): "
                "the broker is unreachable or refuses the worker"
            )
    healthy = not problems
    json.dump(
        {"site": cfg.site, "healthy": healthy, "problems": problems, "cameras": report}, sys.stdout, indent=1
    )
    sys.stdout.write("\n")
    return 0 if healthy else 1


def acl_text(
    site: str, cameras: list[str], user: str, api_user: str | None = None, health_user: str | None = None
) -> str:
    """Mosquitto ``acl_file`` lines: the edge user writes only its cameras' topics, the API only reads."""
    lines = [
        "# Mosquitto acl_file for cityeye (written by `cityeye acl`).",
        "# Each edge box writes only under its own cameras' topics; the API reads and never writes.",
        "# Anything not granted here is refused; anonymous clients are refused by allow_anonymous false.",
        "",
    ]
    if api_user:
        lines += [f"user {api_user}", f"topic read {ROOT}/#", ""]
    lines.append(f"user {user}")
    lines += [f"topic write {ROOT}/{site}/{cam}/#" for cam in cameras]
    lines.append("")
    if health_user:
        lines += [
            "# The broker's health check (docker-compose.yml) reads one $SYS topic and nothing else.",
            f"user {health_user}",
            "topic read $SYS/broker/uptime",
            "",
        ]
    return "\n".join(lines)


def _acl(args: argparse.Namespace) -> int:
    from cityeye.cli import UsageError

    cfg = load_config(args.config)
    if not cfg.cameras:
        raise UsageError(f"{args.config} lists no cameras; an edge user needs at least one camera topic")
    for name in (args.user, args.api_user, args.health_user):
        if name is not None and (not name or any(c.isspace() for c in name)):
            raise UsageError(f"user name {name!r} must be non-empty and contain no spaces")
    sys.stdout.write(
        acl_text(cfg.site, [c.id for c in cfg.cameras], args.user, args.api_user, args.health_user)
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "spool",
        help="inspect the edge worker's store-and-forward queue (health check)",
        description="Read the spool of each camera of a site file: queued, oldest age, dropped, expired, "
        "refused, last write. Exit 0 when every camera's worker wrote recently, 1 otherwise.",
    )
    ssub = p.add_subparsers(dest="spool_command", metavar="SUBCOMMAND", required=True)
    st = ssub.add_parser("status", help="JSON status; exit 1 when a worker is silent or the backlog too old")
    st.add_argument("--config", required=True, help="site YAML file of the edge worker")
    st.add_argument("--camera", action="append", help="only this camera (repeatable); default: all")
    st.add_argument(
        "--max-silence-s",
        type=float,
        help="unhealthy when a camera queued nothing for this long (default: 3 x health_interval_s + 30)",
    )
    st.add_argument(
        "--max-backlog-s",
        type=float,
        help="also unhealthy when the oldest queued event is older than this (default: not checked)",
    )
    st.set_defaults(func=_status)

    a = sub.add_parser(
        "acl",
        help="print a Mosquitto ACL for a site file's cameras",
        description="Print Mosquitto acl_file lines that let one edge user write only the topics of the "
        "cameras in the site file, and (with --api-user) let the API read them all.",
    )
    a.add_argument("--config", required=True, help="site YAML file of the edge box")
    a.add_argument("--user", required=True, help="MQTT user name of the edge box")
    a.add_argument("--api-user", help="MQTT user name of the API (read-only on every cityeye topic)")
    a.add_argument("--health-user", help="MQTT user name of a broker health check (reads $SYS/broker/uptime)")
    a.set_defaults(func=_acl)
