"""Frame sources: an image folder, a video file, or a network stream (RTSP/HTTP) through PyAV.

Each source is an iterator of :class:`Frame` values with a wall-clock timestamp. Pacing lives
here (not in the worker) because only the source knows what "time" means for it: an image
folder emits one image per interval, a file plays at its own frame rate, a live stream is read
as fast as it arrives and sampled. Hardening (supervision, reconnects, keyframe-only decoding)
comes with the streams issue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np

from cityeye.config import CameraConfig
from cityeye.streams.frame import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")


class SourceError(Exception):
    """A source that cannot be opened or read; the message names it (without credentials)."""


class FrameSource(Protocol):
    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def redact(url: str) -> str:
    """Drop user:password from a URL so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"image folder {folder} has no .jpg/.jpeg/.png files")
    return files


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot decode image {path} (not a JPEG/PNG, or truncated)")
    return np.asarray(image, dtype=np.uint8)


class _Stoppable:
    def __init__(self) -> None:
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed; False once closed so loops end promptly on shutdown."""
        if seconds > 0:
            self._stop.wait(seconds)
        return not self._stop.is_set()


class ImageFolderSource(_Stoppable):
    """Plays a folder of images in name order, one per interval, like a slow parking camera."""

    def __init__(self, camera_id: str, folder: Path, interval_s: float, loop: bool = False) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.files = list_images(folder)
        self.interval_s = interval_s
        self.loop = loop

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            for path in self.files:
                if not self._sleep(next_at - time.monotonic()):
                    return
                next_at = time.monotonic() + self.interval_s
                try:
                    image = read_image(path)
                except SourceError as exc:
                    log.warning("camera %s: skipping %s", self.camera_id, exc)
                    continue
                yield Frame(self.camera_id, index, datetime.now(UTC), image, path.name)
                index += 1
            if not self.loop:
                return


class AVSource(_Stoppable):
    """A video file or network stream decoded by FFmpeg (PyAV), sampled every ``interval_s``.

    Files are played in real time (they stand in for a camera); network streams are read as
    they arrive. Timestamps are the stream's presentation time added to the wall-clock time at
    which the stream was opened.
    """

    def __init__(
        self,
        camera_id: str,
        url: str,
        interval_s: float,
        loop: bool = False,
        realtime: bool = True,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.url = url
        self.interval_s = interval_s
        self.loop = loop
        self.is_network = url.startswith(NETWORK_SCHEMES)
        self.realtime = realtime and not self.is_network
        self.timeouts = (open_timeout_s, read_timeout_s)
        if not self.is_network and not Path(url).is_file():
            raise SourceError(f"video file {url} not found")

    def _scrub(self, exc: BaseException) -> str:
        """FFmpeg's messages quote the URL, credentials included."""
        return str(exc).replace(self.url, redact(self.url))

    def _open(self) -> av.container.InputContainer:
        options: dict[str, str] = {}
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        try:
            return av.open(self.url, mode="r", options=options, timeout=self.timeouts)
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {redact(self.url)}: {self._scrub(exc)}") from None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._stop.is_set():
            container = self._open()
            try:
                yield from self._decode(container, index)
                index += 1_000_000  # keep indices unique across loops
            finally:
                container.close()
            if not self.loop:
                return

    def _decode(self, container: av.container.InputContainer, base_index: int) -> Iterator[Frame]:
        if not container.streams.video:
            raise SourceError(f"{redact(self.url)} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        opened_wall = datetime.now(UTC)
        opened_mono = time.monotonic()
        last_emitted: float | None = None
        try:
            for i, frame in enumerate(container.decode(stream)):
                if self._stop.is_set():
                    return
                t = float(frame.time) if frame.time is not None else i / float(stream.average_rate or 25)
                if self.realtime and not self._sleep(opened_mono + t - time.monotonic()):
                    return
                if last_emitted is not None and t - last_emitted < self.interval_s:
                    continue
                last_emitted = t
                image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                yield Frame(self.camera_id, base_index + i, opened_wall + timedelta(seconds=t), image)
        except av.error.FFmpegError as exc:
            raise SourceError(f"decoding {redact(self.url)} failed: {self._scrub(exc)}") from None


def open_source(camera: CameraConfig) -> FrameSource:
    src = camera.source
    if src.startswith(NETWORK_SCHEMES):
        return AVSource(camera.id, src, camera.interval_s, loop=False)
    path = Path(src).expanduser()
    if path.is_dir():
        return ImageFolderSource(camera.id, path, camera.interval_s, loop=camera.loop)
    if path.is_file():
        return AVSource(camera.id, str(path), camera.interval_s, loop=camera.loop)
    raise SourceError(
        f"camera {camera.id}: source {src!r} is neither an existing file, a folder, nor an "
        f"rtsp://, http(s):// or rtmp:// URL"
    )
