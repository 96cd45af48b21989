"""A real RTSP server (GStreamer's gst-rtsp-server) for tests, benchmarks and demos on loopback.

Run it with the Python that has GStreamer's introspection bindings (Debian: ``/usr/bin/python3``
with ``python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly}``), not
with the project's interpreter: it stands in for a camera, which is another process anyway.

    /usr/bin/python3 streams/gst_rtsp_server.py --port 8554 \\
        --mount cam1=test:640x360@10:gop=10 --mount cam2=/path/clip.mp4 --user admin:secret

A mount is ``NAME=test[:WxH@FPS][:gop=N]`` (a live test pattern encoded with x264, one new
keyframe every N frames) or ``NAME=FILE.mp4`` (an H.264 MP4 sent as is, in real time, looped by
restarting the media for each new client). ``--shared`` lets every client of a mount share one
pipeline (how a camera with many viewers behaves, and the only way to serve hundreds of clients
from a small box). ``--user USER:PASSWORD`` requires HTTP Basic authentication on every mount.
The server prints ``READY <port>`` on stdout once it listens.

Only the standard library (and ``gi``, inside :func:`main`) is imported here, so the project's
Python can import :class:`RtspServer`, which starts this script as a child process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = os.environ.get("CITYEYE_GST_PYTHON", "/usr/bin/python3")
"""The interpreter with GStreamer's bindings (python3-gi); override for other systems."""

TEST_SPEC = re.compile(r"^test(?::(?P<w>\d+)x(?P<h>\d+)@(?P<fps>\d+))?(?::gop=(?P<gop>\d+))?$")


def launch_line(spec: str) -> str:
    m = TEST_SPEC.match(spec)
    if m:
        w, h = int(m["w"] or 320), int(m["h"] or 240)
        fps, gop = int(m["fps"] or 10), int(m["gop"] or 10)
        return (
            f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width={w},height={h},framerate={fps}/1 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800 "
            f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
    location = spec.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'( filesrc location="{location}" ! qtdemux ! h264parse '
        f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, help="NAME=test[...] or NAME=FILE.mp4")
    parser.add_argument("--shared", action="store_true", help="one pipeline per mount for all clients")
    parser.add_argument("--user", help="USER:PASSWORD required by every mount (HTTP Basic)")
    args = parser.parse_args(argv)

    import gi  # type: ignore[import-not-found, unused-ignore]  # only under the system Python

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found, unused-ignore]

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.user:
        user, _, password = args.user.partition(":")
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "viewer")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
    for item in args.mount:
        name, sep, spec = item.partition("=")
        if not sep or not name:
            parser.error(f"--mount {item!r}: expected NAME=test[:WxH@FPS][:gop=N] or NAME=FILE.mp4")
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch_line(spec))
        factory.set_shared(args.shared)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role("viewer", "media.factory.access", True)
            permissions.add_permission_for_role("viewer", "media.factory.construct", True)
            factory.set_permissions(permissions)
        mounts.add_factory("/" + name.lstrip("/"), factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, loop.quit)
    print(f"READY {args.port}", flush=True)
    loop.run()
    return 0


class RtspServer:
    """This script as a child process, for tests and benchmarks run by the project's Python."""

    def __init__(
        self,
        port: int,
        mounts: dict[str, str],
        user: str | None = None,
        shared: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.port = port
        self.host = host
        self.mounts = dict(mounts)
        self.user = user
        self.shared = shared
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        """None when the server can run here, else why not (for a test's skip reason)."""
        if not Path(SYSTEM_PYTHON).exists():
            return f"{SYSTEM_PYTHON} not found (set CITYEYE_GST_PYTHON to a Python with python3-gi)"
        probe = subprocess.run(
            [
                SYSTEM_PYTHON,
                "-c",
                "import gi; gi.require_version('GstRtspServer', '1.0'); "
                "from gi.repository import GstRtspServer",
            ],
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            return (
                "GStreamer's RTSP server is not installed (apt-get install python3-gi "
                "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{base,good,bad,ugly}; .ci/run does this)"
            )
        return None

    def url(self, mount: str, credentials: str | None = None) -> str:
        auth = f"{credentials}@" if credentials else ""
        return f"rtsp://{auth}{self.host}:{self.port}/{mount}"

    def start(self, timeout_s: float = 15.0) -> RtspServer:
        cmd = [SYSTEM_PYTHON, __file__, "--host", self.host, "--port", str(self.port)]
        for name, spec in self.mounts.items():
            cmd += ["--mount", f"{name}={spec}"]
        if self.user:
            cmd += ["--user", self.user]
        if self.shared:
            cmd.append("--shared")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith(b"READY"):
                    return self
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"RTSP server exited with {self.proc.returncode}: {err.strip()}")
        self.kill()
        raise TimeoutError(f"RTSP server not ready on port {self.port} after {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL, like a camera losing power: no goodbye on the connection."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the connection stays open and goes silent, like a network outage."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
