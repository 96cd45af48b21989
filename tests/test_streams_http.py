"""HTTP cameras: an MJPEG (multipart/x-mixed-replace) server and an HLS playlist, both on loopback.

The MJPEG server is a small real HTTP server in a thread that streams JPEG parts the way IP
cameras do; the HLS stream is cut by the ffmpeg command line and served by Python's file server.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from cityeye.streams.frame import Frame
from cityeye.streams.sources import AVSource, SourceError
from tests.conftest import free_port
from tests.test_streams_sampling import write_h264


class MjpegHandler(http.server.BaseHTTPRequestHandler):
    fps = 10.0

    def do_GET(self) -> None:
        if self.path != "/video.mjpg":
            self.send_error(404, "no such stream")
            return
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while True:
                img = np.full((120, 160, 3), (i * 9) % 255, np.uint8)
                cv2.putText(img, str(i), (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
                jpeg = cv2.imencode(".jpg", img)[1].tobytes()
                self.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpeg)).encode()
                    + b"\r\n\r\n"
                    + jpeg
                    + b"\r\n"
                )
                i += 1
                time.sleep(1 / self.fps)
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mjpeg_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), MjpegHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(QuietFiles, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_mjpeg_camera(mjpeg_server: str) -> None:
    src = AVSource("cam", f"{mjpeg_server}/video.mjpg", 0.3, sampling="keyframe", open_timeout_s=5)
    frames = []
    for frame in src:
        frames.append(frame)
        if len(frames) == 4:
            src.close()
    assert all(f.image.shape == (120, 160, 3) for f in frames)
    assert src.stats.frames_decoded == 4  # every JPEG is a keyframe: only the sampled ones are decoded
    assert src.stats.packets >= 9  # about 3 parts per 0.3 s interval were read


def test_mjpeg_wrong_path_is_not_found(mjpeg_server: str) -> None:
    with pytest.raises(SourceError) as err:
        AVSource("cam", f"{mjpeg_server}/nope.mjpg", 1.0, open_timeout_s=5).open()
    assert err.value.kind == "not_found" and "stream path" in str(err.value)


def test_hls_playlist(tmp_path: Path, file_server: tuple[str, Path]) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command is not installed (apt-get install ffmpeg; .ci/run does this)")
    url, root = file_server
    video = write_h264(tmp_path / "v.mp4", frames=60, fps=10, gop=10)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            str(video),
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_playlist_type",
            "vod",
            str(root / "index.m3u8"),
        ],
        check=True,
    )
    src = AVSource("cam", f"{url}/index.m3u8", 2.0, sampling="keyframe", open_timeout_s=5)
    frames: list[Frame] = []
    src.open()
    with pytest.raises(SourceError) as err:  # a network stream that ends is a camera gone away
        frames.extend(src.frames())
    assert err.value.kind == "ended"
    times = [f.stream_time_s for f in frames]
    assert len(times) == 3 and all(t is not None for t in times)
    assert np.diff(np.asarray(times, dtype=float)).tolist() == pytest.approx([2.0, 2.0], abs=0.01)
    assert src.stats.frames_decoded == 3
