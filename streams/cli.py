"""`cityeye streams probe SOURCE`: can this camera be read, and how would cityeye sample it?

For whoever installs a camera: it opens the source the way the edge worker does (transport,
timeouts, credentials from the environment), reads it for a few seconds and prints one JSON
object: codec, size, frame rate, measured keyframe period, time to open and to the first frame,
bit rate, and for a failure the error's kind and what to check. The URL is printed without
credentials. Exit code 0 when frames came, 1 when the source could not be read.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Literal

from cityeye.streams.config import StreamConfig, default_password_env
from cityeye.streams.sources import NETWORK_SCHEMES, AVSource, SourceError, redact, with_credentials


def probe(
    source: str,
    seconds: float,
    transport: Literal["tcp", "udp"] = "tcp",
    username: str | None = None,
    password_env: str | None = None,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Read ``source`` for ``seconds`` with keyframe sampling of every keyframe; never raises SourceError."""
    cfg = StreamConfig(
        source=source,
        transport=transport,
        username=username,
        password_env=password_env,
        open_timeout_s=open_timeout_s,
        read_timeout_s=read_timeout_s,
    )
    out: dict[str, Any] = {"source": redact(source), "ok": False}
    url = source
    if source.startswith(NETWORK_SCHEMES):
        url = with_credentials(source, cfg.username, cfg.password("probe"))
    try:
        src = AVSource(
            "probe",
            url,
            0.0,
            realtime=False,
            open_timeout_s=open_timeout_s,
            read_timeout_s=read_timeout_s,
            sampling="keyframe",
            transport=cfg.transport,
        )
        t0 = time.monotonic()
        src.open()
        out["open_s"] = round(time.monotonic() - t0, 3)
        out.update(src.describe())
        frames = 0
        for frame in src.frames():
            if frames == 0:
                out["first_frame_s"] = round(time.monotonic() - t0, 3)
                out["frame_size"] = [frame.width, frame.height]
            frames += 1
            if time.monotonic() - t0 >= seconds:
                src.close()
        elapsed = time.monotonic() - t0
    except SourceError as exc:
        out.update({"error_kind": exc.kind, "error": str(exc)})
        return out
    stats = src.stats
    out.update(
        {
            "ok": frames > 0,
            "seconds_read": round(elapsed, 2),
            "packets": stats.packets,
            "keyframes_decoded": stats.frames_decoded,
            "keyframe_period_s": None
            if stats.keyframe_period_s is None
            else round(stats.keyframe_period_s, 3),
            "bitrate_kbps": round(stats.bytes * 8 / 1000 / max(elapsed, 1e-6), 1) if src.live else None,
            "decode_errors": stats.decode_errors,
        }
    )
    if frames == 0:
        out["error"] = "no decodable frame (no keyframe) within the probe; read longer with --seconds"
    return out


def run_probe(args: argparse.Namespace) -> int:
    from cityeye.cli import UsageError

    if args.seconds <= 0:
        raise UsageError("--seconds must be positive")
    try:
        result = probe(
            args.source,
            args.seconds,
            transport=args.transport,
            username=args.username,
            password_env=args.password_env,
            open_timeout_s=args.open_timeout,
            read_timeout_s=args.read_timeout,
        )
    except ValueError as exc:  # a password_env that is not set, a password without a user name
        raise UsageError(str(exc)) from None
    print(json.dumps(result))
    return 0 if result["ok"] else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("streams", help="camera streams: probe a source before configuring it")
    streams = p.add_subparsers(dest="streams_command", metavar="COMMAND", required=True)
    q = streams.add_parser(
        "probe",
        help="open a camera URL, file or folder the way the edge does and print what it delivers (JSON)",
    )
    q.add_argument("source", help="rtsp(s)://, http(s)://, rtmp:// URL or a video file")
    q.add_argument("--seconds", type=float, default=10.0, help="how long to read (default 10)")
    q.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTSP transport")
    q.add_argument("--username", help="camera user name (the password comes from --password-env)")
    q.add_argument(
        "--password-env",
        help=f"environment variable holding the password (default {default_password_env('probe')} if set)",
    )
    q.add_argument("--open-timeout", type=float, default=10.0, help="seconds to wait for the camera")
    q.add_argument(
        "--read-timeout", type=float, default=10.0, help="seconds of silence that count as a stall"
    )
    q.set_defaults(func=run_probe)
