"""Sampling before decoding, stream clocks, damaged files, credentials and the supervisor on files.

Videos are encoded here with libx264 (PyAV) so the keyframe period and B-frames are known; the
shared traffic clips check the same on real camera footage.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from cityeye.config import CameraConfig
from cityeye.streams.config import StreamConfig, default_password_env
from cityeye.streams.frame import Frame
from cityeye.streams.sources import AVSource, SourceError, StreamClock, open_source, redact, with_credentials
from cityeye.streams.supervisor import Backoff, StateChange, StreamState, StreamSupervisor
from tests.conftest import shared_path

W, H = 64, 48


def picture(i: int) -> np.ndarray:
    img = np.full((H, W, 3), (i * 7) % 200, np.uint8)
    img[:, i % W] = 255  # a moving bar: every frame differs
    return img


def write_h264(path: Path, frames: int, fps: int = 10, gop: int = 20, bframes: int = 0) -> Path:
    params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "x264-params": params})
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture(i), format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def all_frames(path: Path) -> dict[float, np.ndarray]:
    with av.open(str(path)) as c:
        return {round(float(f.time), 3): f.to_ndarray(format="bgr24") for f in c.decode(video=0)}


@pytest.mark.parametrize("bframes", [0, 2])
def test_keyframe_sampling_decodes_only_keyframes(tmp_path: Path, bframes: int) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=200, fps=10, gop=20, bframes=bframes)  # 20 s, key every 2 s
    src = AVSource("cam", str(video), interval_s=5.0, realtime=False, sampling="keyframe")
    frames = list(src)
    times = [f.stream_time_s for f in frames]
    # The first keyframe at or after each 5 s step of the grid: 0, 5->6, 10, 15->16.
    assert times == [0.0, 6.0, 10.0, 16.0]
    assert src.stats.frames_decoded == len(frames)  # nothing but the sampled keyframes was decoded
    assert src.stats.packets == 200
    assert src.stats.keyframe_period_s == pytest.approx(2.0)
    reference = all_frames(video)  # exactly the pictures a full decode gives at those times
    for f in frames:
        assert np.array_equal(f.image, reference[round(f.stream_time_s or 0.0, 3)])


def test_long_keyframe_period_falls_back_to_full_decoding(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=300, fps=10, gop=100)  # keyframes at 0, 10, 20 s
    src = AVSource(
        "cam", str(video), interval_s=2.0, realtime=False, sampling="keyframe", keyframe_wait_s=1.0
    )
    times = [f.stream_time_s for f in src]
    assert src.stats.full_decode
    # Keyframe 0; nothing decodable until the next keyframe (10 s); then every 2 s from full decoding.
    assert times[:2] == [0.0, 10.0]
    assert times[2:] == pytest.approx([12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 26.0, 28.0])
    assert 190 <= src.stats.frames_decoded <= 202


def test_fps_sampling_keeps_the_interval_on_average(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=100, fps=10, gop=20, bframes=2)
    src = AVSource("cam", str(video), interval_s=0.25, realtime=False, sampling="fps")
    times = [f.stream_time_s or 0.0 for f in src]
    assert src.stats.frames_decoded == 100
    # A 0.25 s grid over 0.1 s frames: picks 0, 0.3, 0.5, 0.8, 1.0 ... (mean gap exactly 0.25).
    assert times[:5] == pytest.approx([0.0, 0.3, 0.5, 0.8, 1.0])
    assert (times[-1] - times[0]) / (len(times) - 1) == pytest.approx(0.25, abs=0.01)


def test_files_play_in_real_time_with_wall_clock_stamps(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=20, fps=10, gop=5)
    t0 = time.monotonic()
    frames = list(AVSource("cam", str(video), interval_s=0.5, sampling="keyframe"))
    assert time.monotonic() - t0 >= 1.5 * 0.9  # keyframes at 0, 0.5, 1.0, 1.5 s shown on time
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(frames)]
    assert gaps == pytest.approx([0.5, 0.5, 0.5], abs=1e-3)


def test_truncated_and_corrupt_files_are_permanent_errors(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=100)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 6 // 10])
    src = AVSource("cam", str(cut), 0.0, realtime=False)
    got: list[Frame] = []
    with pytest.raises(SourceError) as err:
        got.extend(src)
    assert err.value.kind == "corrupt" and err.value.permanent
    assert "truncated" in str(err.value) and "of its 100 frames" in str(err.value)
    assert 40 < len(got) < 70  # what was there was still delivered
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as err:
        AVSource("cam", str(junk), 1.0).open()
    assert err.value.kind == "corrupt" and err.value.permanent and "junk.mp4" in str(err.value)


def test_real_traffic_clip_keyframes(shared_dir: Path) -> None:
    clip = shared_path("data", "traffic", "intel_car_detection", "car-detection.mp4")  # 30 s, key every 4.8 s
    src = AVSource("cam", str(clip), interval_s=10.0, realtime=False, sampling="keyframe")
    times = [f.stream_time_s for f in src]
    assert times == pytest.approx([0.0, 14.4, 24.0])  # grid 0, 10, 20 -> next keyframes
    assert src.stats.frames_decoded == 3 and src.stats.packets == 377


def test_live_clock_uses_the_least_delayed_packet(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    clock = StreamClock(live=True, max_drift_s=5.0)
    clock.observe(0.0)  # arrived 3 s late (buffered while FFmpeg probed)
    now[0] = 1000.1
    clock.observe(0.1)
    now[0] = 1001.0
    clock.observe(4.0)  # real time: arrives 3 s "early" relative to the first: offset 997
    assert clock.wall(4.0).timestamp() == pytest.approx(1001.0)
    assert clock.wall(0.0).timestamp() == pytest.approx(997.0)
    now[0] = 1020.0
    clock.observe(5.0)  # 14 s later than mapped, for good: the camera restarted its clock
    assert clock.resets == 1 and clock.wall(5.0).timestamp() == pytest.approx(1020.0)


def test_credentials_are_encoded_and_never_shown() -> None:
    url = with_credentials("rtsp://10.1.2.3:554/s1", "admin", "p@ss:w/rd")
    assert url == "rtsp://admin:p%40ss%3Aw%2Frd@10.1.2.3:554/s1"
    assert redact(url) == "rtsp://***@10.1.2.3:554/s1"
    assert with_credentials("rtsp://u:x@h/s", "admin", "other") == "rtsp://u:x@h/s"  # the URL's own win
    assert with_credentials("rtsp://h/s", None, None) == "rtsp://h/s"
    with pytest.raises(ValueError, match="no user name"):
        with_credentials("rtsp://h/s", None, "secret")
    src = AVSource("c", url, 1.0)
    msg = src._scrub(RuntimeError(f"failed: {url} and p%40ss%3Aw%2Frd and p@ss:w/rd"))
    assert "p@ss" not in msg and "p%40ss" not in msg


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_password_env("gate-1.north") == "CITYEYE_CAMERA_PASSWORD_GATE_1_NORTH"
    cfg = StreamConfig(source="rtsp://h/s", username="admin")
    assert cfg.password("gate-1.north") is None
    monkeypatch.setenv("CITYEYE_CAMERA_PASSWORD_GATE_1_NORTH", "envpw")
    assert cfg.password("gate-1.north") == "envpw"
    secret = tmp_path / "pw"
    secret.write_text("filepw\n")
    assert StreamConfig(source="rtsp://h/s", password_file=secret).password("x") == "filepw"
    with pytest.raises(ValueError, match=r"MY_PW.*not set"):
        StreamConfig(source="rtsp://h/s", password_env="MY_PW").password("x")
    with pytest.raises(ValueError, match="either"):
        StreamConfig(source="rtsp://h/s", password_env="A", password_file=secret)
    with pytest.raises(ValueError, match="backoff_max_s"):
        StreamConfig(source="rtsp://h/s", backoff_initial_s=10, backoff_max_s=5)


def test_sampling_follows_the_camera_mode(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=10)
    parking = open_source(CameraConfig(id="p", source=str(video), mode="parking"))
    traffic = open_source(CameraConfig(id="t", source=str(video), mode="traffic"))
    forced = open_source(CameraConfig(id="f", source=str(video), mode="traffic", sampling="keyframe"))
    assert isinstance(parking, AVSource) and parking.sampling == "keyframe"
    assert isinstance(traffic, AVSource) and traffic.sampling == "fps"
    assert isinstance(forced, AVSource) and forced.sampling == "keyframe"


def test_backoff_doubles_to_the_bound_with_jitter() -> None:
    b = Backoff(1.0, 8.0, jitter=0.0)
    assert [b.next_delay() for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    b.reset()
    assert b.next_delay() == 1.0
    j = Backoff(1.0, 8.0, jitter=0.5)
    delays = [j.next_delay() for _ in range(50)][4:]
    assert all(4.0 <= d <= 8.0 for d in delays) and len(set(delays)) > 1


def run_supervisor(
    source: AVSource, timeout: float = 10.0
) -> tuple[StreamSupervisor, list[StateChange], int]:
    states: list[StateChange] = []
    count = [0]
    lock = threading.Lock()

    def on_frame(frame: Frame) -> None:
        with lock:
            count[0] += 1

    sup = StreamSupervisor(source, on_frame, states.append, Backoff(0.05, 0.2))
    sup.start()
    assert sup.join(timeout)
    return sup, states, count[0]


def test_supervisor_on_files_ends_loops_and_gives_up_on_damage(tmp_path: Path) -> None:
    video = write_h264(tmp_path / "v.mp4", frames=30, gop=10)
    _, states, n = run_supervisor(AVSource("cam", str(video), 0.0, realtime=False))
    assert [s.state for s in states] == [StreamState.CONNECTING, StreamState.STREAMING, StreamState.ENDED]
    assert n == 30

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    sup, states, n = run_supervisor(AVSource("cam", str(cut), 0.0, realtime=False, loop=True))
    assert states[-1].state is StreamState.ERROR and "truncated" in (states[-1].detail or "")
    assert sup.attempts == 1  # permanent: no retry, and no second loop
    assert 0 < n < 30

    looped = AVSource("cam", str(video), 0.0, realtime=False, loop=True)
    got: list[Frame] = []

    def collect(frame: Frame) -> None:
        got.append(frame)
        if len(got) >= 75:
            looped.close()

    sup = StreamSupervisor(looped, collect, None)
    sup.start()
    assert sup.join(10)
    assert len(got) >= 75 and len({f.index for f in got}) == len(got)  # indices stay unique across loops
