"""Streams against a real RTSP server (GStreamer's gst-rtsp-server, a separate process) on loopback.

The server is killed, frozen and restarted under a running supervisor; wrong credentials, a wrong
path and a closed port must give a clear state and error, no crash and no busy loop (the process
CPU time is measured while the supervisor retries).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from cityeye.config import CameraConfig
from cityeye.streams.frame import Frame
from cityeye.streams.gst_rtsp_server import RtspServer
from cityeye.streams.sources import AVSource, SourceError, open_source
from cityeye.streams.supervisor import Backoff, StateChange, StreamState, StreamSupervisor
from tests.conftest import free_port

LIVE = "test:320x240@10:gop=10"  # a keyframe every second


@pytest.fixture(scope="module")
def gst() -> None:
    reason = RtspServer.available()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def server(gst: None) -> Iterator[RtspServer]:
    srv = RtspServer(free_port(), {"cam": LIVE}, user="admin:s3cret").start()
    yield srv
    srv.stop()


class Recorder:
    """Collects a supervisor's frames and state changes with their arrival times."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, Frame]] = []
        self.states: list[tuple[float, StateChange]] = []
        self._lock = threading.Lock()

    def frame(self, frame: Frame) -> None:
        with self._lock:
            self.frames.append((time.monotonic(), frame))

    def state(self, change: StateChange) -> None:
        with self._lock:
            self.states.append((time.monotonic(), change))

    def names(self) -> list[StreamState]:
        with self._lock:
            return [c.state for _, c in self.states]

    def wait(self, what: str, cond: Callable[[], bool], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; states {self.names()}")


def supervise(url: str, backoff: Backoff, read_timeout_s: float = 2.0) -> tuple[StreamSupervisor, Recorder]:
    rec = Recorder()
    source = AVSource("cam", url, 0.5, sampling="keyframe", open_timeout_s=3.0, read_timeout_s=read_timeout_s)
    sup = StreamSupervisor(source, rec.frame, rec.state, backoff)
    sup.start()
    return sup, rec


def test_rtsp_keyframes_are_read_with_wall_clock_times(server: RtspServer) -> None:
    src = AVSource("cam", server.url("cam", "admin:s3cret"), 1.0, sampling="keyframe", open_timeout_s=5)
    frames = []
    for frame in src:
        frames.append((datetime.now(UTC), frame))
        if len(frames) == 4:
            src.close()
    assert all(f.camera_id == "cam" and f.image.shape == (240, 320, 3) for _, f in frames)
    times = [f.stream_time_s or 0.0 for _, f in frames]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(abs(g - 1.0) < 0.05 for g in gaps), gaps  # one keyframe per interval, on the grid
    lags = [(seen - f.timestamp).total_seconds() for seen, f in frames]
    assert all(-0.05 < lag < 1.0 for lag in lags), lags  # stamped when seen, never in the future
    # Keyframe sampling decodes only the sampled keyframes (a picture may take 2 packets here).
    assert src.stats.frames_decoded <= 2 * len(frames)
    assert src.stats.packets > 3 * src.stats.frames_decoded


def test_rtsp_fps_sampling_over_udp(server: RtspServer) -> None:
    src = AVSource(
        "cam", server.url("cam", "admin:s3cret"), 0.25, sampling="fps", transport="udp", open_timeout_s=5
    )
    frames = []
    for frame in src:
        frames.append(frame)
        if len(frames) == 9:
            src.close()
    span = frames[-1].stream_time_s - frames[0].stream_time_s  # type: ignore[operator]
    assert 1.9 < span < 2.3, span  # 8 intervals of 0.25 s out of a 10 fps stream
    assert src.stats.frames_decoded >= 19  # every frame is decoded, a quarter passed on


def test_credentials_from_environment_with_special_characters(
    gst: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "p@ss:w/rd%"
    with RtspServer(free_port(), {"cam": LIVE}, user=f"admin:{password}") as srv:
        monkeypatch.setenv("CITYEYE_CAMERA_PASSWORD_GATE_1", password)
        cam = CameraConfig(id="gate-1", source=srv.url("cam"), username="admin", mode="parking")
        src = open_source(cam)
        assert isinstance(src, AVSource) and src.sampling == "keyframe"
        assert password not in src.name and "admin" not in src.name
        frame = next(iter(src))
        src.close()
        assert frame.image.shape == (240, 320, 3)


@pytest.mark.parametrize(
    ("mount", "credentials", "kind", "hint"),
    [
        ("cam", "admin:wrong", "auth", "password"),
        ("nope", "admin:s3cret", "not_found", "stream path"),
        (None, None, "refused", "port"),
    ],
)
def test_bad_camera_is_a_clear_error_without_busy_loop(
    server: RtspServer, mount: str | None, credentials: str | None, kind: str, hint: str
) -> None:
    url = server.url(mount, credentials) if mount else f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/cam"
    cpu0, t0 = time.process_time(), time.monotonic()
    sup, rec = supervise(url, Backoff(0.05, 0.4, jitter=0.2))
    try:
        rec.wait("an error", lambda: StreamState.ERROR in rec.names(), timeout=10)
        time.sleep(4.0)
        assert sup.thread.is_alive()  # still retrying, not crashed
        wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        sup.stop()
        sup.join(5)
    changes = [c for _, c in rec.states]
    errors = [c for c in changes if c.state is StreamState.ERROR]
    assert len(errors) == 1  # reported once, then retried quietly
    err = errors[0]
    assert err.error_kind == kind and hint in (err.detail or ""), err.detail
    assert "s3cret" not in (err.detail or "") and "wrong" not in (err.detail or "")
    assert sup.attempts >= 5  # it did keep retrying, at most every backoff_max_s (0.4 s)
    assert sup.attempts <= wall / 0.4 * 2 + 6
    assert cpu / wall < 0.10, f"{cpu:.2f} s CPU in {wall:.1f} s while retrying"


def test_server_killed_mid_stream_comes_back_within_the_backoff_bound(gst: None) -> None:
    port = free_port()
    srv = RtspServer(port, {"cam": LIVE}).start()
    backoff_max = 1.0
    sup, rec = supervise(srv.url("cam"), Backoff(0.2, backoff_max, jitter=0.2))
    try:
        rec.wait("frames", lambda: len(rec.frames) >= 2, timeout=15)
        assert rec.names()[:2] == [StreamState.CONNECTING, StreamState.STREAMING]
        srv.kill()
        rec.wait(
            "stalled or reconnecting",
            lambda: bool({StreamState.STALLED, StreamState.RECONNECTING} & set(rec.names())),
            timeout=10,
        )
        time.sleep(2.0)  # the camera stays away a while: retries back off to backoff_max
        srv = RtspServer(port, {"cam": LIVE}).start()
        back = time.monotonic()
        n = len(rec.frames)
        streaming = rec.wait(
            "streaming again", lambda: rec.names()[-1] is StreamState.STREAMING, timeout=backoff_max + 8
        )
        # Within the backoff bound plus one connection (FFmpeg probes 1 s of the stream).
        assert streaming - back < backoff_max + 3.0, streaming - back
        rec.wait("frames again", lambda: len(rec.frames) > n, timeout=5)
        assert sup.reconnects >= 1
    finally:
        sup.stop()
        sup.join(5)
        srv.stop()


def test_frozen_server_is_stalled_then_reconnected(gst: None) -> None:
    srv = RtspServer(free_port(), {"cam": LIVE}).start()
    sup, rec = supervise(srv.url("cam"), Backoff(0.2, 1.0), read_timeout_s=1.5)
    try:
        rec.wait("frames", lambda: len(rec.frames) >= 2, timeout=15)
        srv.pause()  # the TCP connection stays open and goes silent
        frozen = time.monotonic()
        stalled = rec.wait("stalled", lambda: StreamState.STALLED in rec.names(), timeout=10)
        assert stalled - frozen < 2 * 1.5 + 1.0  # FFmpeg's read timeout may take two reads
        stall = next(c for _, c in rec.states if c.state is StreamState.STALLED)
        assert "no data for 1.5 s" in (stall.detail or "")
        srv.resume()
        rec.wait("streaming again", lambda: rec.names()[-1] is StreamState.STREAMING, timeout=15)
        names = rec.names()
        assert names.index(StreamState.RECONNECTING) > names.index(StreamState.STALLED)
    finally:
        sup.stop()
        sup.join(5)
        srv.stop()


def test_open_timeout_is_reported(gst: None) -> None:
    """A server that accepts the connection and never answers: the open times out, clearly."""
    srv = RtspServer(free_port(), {"cam": LIVE}).start()
    srv.pause()
    try:
        src = AVSource("cam", srv.url("cam"), 1.0, open_timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(SourceError) as err:
            src.open()
        assert err.value.kind == "timeout" and "no answer within 1 s" in str(err.value)
        assert time.monotonic() - t0 < 4.0
    finally:
        srv.stop()


def test_probe_command_reports_a_camera_and_its_errors(
    server: RtspServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAM_PW", "s3cret")
    cmd = [sys.executable, "-m", "cityeye", "streams", "probe", "--seconds", "2.5"]
    ok = subprocess.run(
        [*cmd, server.url("cam"), "--username", "admin", "--password-env", "CAM_PW"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    info = json.loads(ok.stdout)
    assert info["ok"] and info["codec"] == "h264" and info["frame_size"] == [320, 240]
    assert info["keyframe_period_s"] == pytest.approx(1.0, abs=0.05) and info["live"]
    assert "s3cret" not in ok.stdout + ok.stderr
    bad = subprocess.run(
        [*cmd, server.url("cam", "admin:nope")], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 1
    err = json.loads(bad.stdout)
    assert err["error_kind"] == "auth" and "nope" not in bad.stdout
    unset = subprocess.run(
        [*cmd, server.url("cam"), "--username", "admin", "--password-env", "NOT_SET_ANYWHERE"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unset.returncode == 2 and "NOT_SET_ANYWHERE" in unset.stderr
