"""Frame sources on real files: image folders (jpg + png, name order, loop) and video decoded by PyAV."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from cityeye.config import CameraConfig
from cityeye.streams.sources import AVSource, ImageFolderSource, SourceError, open_source, redact


def _write_images(folder: Path) -> None:
    folder.mkdir()
    for i, name in enumerate(["b.png", "a.jpg", "c.JPEG"]):
        img = np.full((48, 64, 3), 40 * (i + 1), np.uint8)
        cv2.imwrite(str(folder / name), img)
    (folder / "notes.txt").write_text("not an image")


def _write_video(path: Path, frames: int = 50, fps: int = 25) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            img = np.full((48, 64, 3), (i * 5) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_image_folder_plays_in_name_order_jpg_and_png(tmp_path: Path) -> None:
    _write_images(tmp_path / "f")
    frames = list(ImageFolderSource("cam", tmp_path / "f", interval_s=0.0))
    assert [f.source_name for f in frames] == ["a.jpg", "b.png", "c.JPEG"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(f.camera_id == "cam" and f.image.shape == (48, 64, 3) for f in frames)
    assert all(f.timestamp.tzinfo is not None for f in frames)


def test_image_folder_interval_and_loop(tmp_path: Path) -> None:
    _write_images(tmp_path / "f")
    src = ImageFolderSource("cam", tmp_path / "f", interval_s=0.05, loop=True)
    t0 = time.monotonic()
    got = []
    for frame in src:
        got.append(frame.source_name)
        if len(got) == 7:
            src.close()
    assert got[:7] == ["a.jpg", "b.png", "c.JPEG", "a.jpg", "b.png", "c.JPEG", "a.jpg"]
    assert time.monotonic() - t0 >= 6 * 0.05 * 0.9


def test_corrupt_image_is_skipped_not_fatal(tmp_path: Path) -> None:
    _write_images(tmp_path / "f")
    (tmp_path / "f" / "b.png").write_bytes(b"\x89PNG truncated")
    names = [f.source_name for f in ImageFolderSource("cam", tmp_path / "f", interval_s=0.0)]
    assert names == ["a.jpg", "c.JPEG"]


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"no \.jpg/\.jpeg/\.png"):
        ImageFolderSource("cam", tmp_path / "empty", 1.0)


def test_video_file_sampled_by_stream_time(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    _write_video(video, frames=50, fps=25)  # 2 s of video
    frames = list(AVSource("cam", str(video), interval_s=0.5, realtime=False))
    assert len(frames) == 4  # t = 0, 0.5, 1.0, 1.5
    gaps = [(b.timestamp - a.timestamp).total_seconds() for a, b in itertools.pairwise(frames)]
    assert all(abs(g - 0.5) < 0.05 for g in gaps), gaps
    assert frames[0].image.shape == (48, 64, 3)


def test_truncated_video_reports_error(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    _write_video(video)
    (tmp_path / "cut.mp4").write_bytes(video.read_bytes()[:300])
    with pytest.raises(SourceError, match=r"cut\.mp4"):
        list(AVSource("cam", str(tmp_path / "cut.mp4"), interval_s=0.0, realtime=False))


def test_open_source_dispatch_and_errors(tmp_path: Path) -> None:
    _write_images(tmp_path / "f")
    assert isinstance(open_source(CameraConfig(id="c", source=str(tmp_path / "f"))), ImageFolderSource)
    with pytest.raises(SourceError, match="neither an existing file"):
        open_source(CameraConfig(id="c", source=str(tmp_path / "missing")))


def test_credentials_never_in_messages() -> None:
    assert redact("rtsp://admin:pa55@10.1.2.3:554/s1") == "rtsp://***@10.1.2.3:554/s1"
    assert redact("rtsp://10.1.2.3/s1") == "rtsp://10.1.2.3/s1"
    src = AVSource("c", "rtsp://admin:pa55@127.0.0.1:9/s1", 1.0, open_timeout_s=2, read_timeout_s=2)
    with pytest.raises(SourceError) as err:
        next(iter(src))
    assert "pa55" not in str(err.value) and "admin" not in str(err.value)
