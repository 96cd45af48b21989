"""Frame sources: an image folder, a video file, or a network stream (RTSP/HTTP) through PyAV.

A source is opened (:meth:`open`, which may fail with a classified :class:`SourceError`) and then
read (:meth:`frames`) until it ends or fails; reconnecting is the supervisor's job
(``streams/supervisor.py``), so a source never sleeps on errors itself. Iterating a source
(``for frame in source``) opens and reads it in one go, for offline use.

Sampling happens before decoding, where the CPU is spent: in ``keyframe`` sampling, packets are
filtered at the demuxer and only the first keyframe after each interval reaches the decoder, which
is what lets one 2-core box follow hundreds of parking cameras; in ``fps`` sampling every packet is
decoded (tracking needs consecutive frames) and at most one frame per interval is converted and
passed on. Intervals are kept on a grid in stream time, so a keyframe period that does not divide
the interval still averages to the configured rate.

FFmpeg releases the GIL while it reads and decodes, so one thread per camera scales.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import av
import av.container
import cv2
import numpy as np
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.stream import VideoStream

from cityeye.streams.frame import Frame

if TYPE_CHECKING:
    from cityeye.config import CameraConfig

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "rtmps://", "srt://", "udp://")

ErrorKind = Literal[
    "auth",
    "not_found",
    "refused",
    "unreachable",
    "timeout",
    "stalled",
    "ended",
    "protocol",
    "permission",
    "corrupt",
    "unsupported",
    "other",
]
SamplingMode = Literal["keyframe", "fps"]

MAX_CONSECUTIVE_DECODE_ERRORS = 200
"""A stream whose packets have failed to decode this many times in a row is treated as broken."""


class SourceError(Exception):
    """A source that cannot be opened or read; the message names it (without credentials).

    ``kind`` says what went wrong in a word (dashboards and tests branch on it); ``permanent`` is
    true when retrying cannot help (a missing or corrupt file), so the supervisor stops trying.
    """

    def __init__(self, message: str, kind: ErrorKind = "other", permanent: bool = False) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.permanent = permanent


@dataclass
class DecodeStats:
    """Counters of one source, written by its reading thread and read by health reports."""

    packets: int = 0
    bytes: int = 0
    frames_decoded: int = 0
    frames_emitted: int = 0
    decode_errors: int = 0
    decode_s: float = 0.0
    """Time spent in the decoder and in the conversion to BGR (not in reading the network)."""
    clock_resets: int = 0
    keyframe_period_s: float | None = None
    full_decode: bool = False
    """Keyframe sampling fell back to decoding every frame (keyframes too far apart)."""
    last_packet_mono: float | None = None
    last_error: str | None = None


class FrameSource(Protocol):
    camera_id: str
    live: bool
    """True for network streams: their end means the camera went away, not that the work is done."""
    loop: bool
    stats: DecodeStats

    def open(self) -> None: ...

    def frames(self) -> Iterator[Frame]: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


def redact(url: str) -> str:
    """Drop user:password from a URL so it can be logged."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """The URL with user and password in its authority, percent-encoded (passwords may hold '@' or ':').

    Credentials already in the URL win over the configured user name; a configured password is
    added only when the URL has none.
    """
    if username is None and password is None:
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        return url
    user = parts.username if parts.username is not None else username
    if user is None:
        raise ValueError(f"{redact(url)}: a camera password was given but no user name (set `username`)")
    host = parts.netloc.rpartition("@")[2]
    userinfo = quote(unquote(user), safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


def list_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"image folder {folder} has no .jpg/.jpeg/.png files", "not_found", permanent=True)
    return files


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"cannot decode image {path} (not a JPEG/PNG, or truncated)", "corrupt")
    return np.asarray(image, dtype=np.uint8)


class _Stoppable:
    def __init__(self) -> None:
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless closed; False once closed so loops end promptly on shutdown."""
        if seconds > 0:
            self._stop.wait(seconds)
        return not self._stop.is_set()


class ImageFolderSource(_Stoppable):
    """Plays a folder of images in name order, one per interval, like a slow parking camera.

    The folder is listed again at each open, so images added between loops are picked up.
    """

    live = False

    def __init__(
        self, camera_id: str, folder: Path, interval_s: float, loop: bool = False, realtime: bool = True
    ) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.folder = folder
        self.files = list_images(folder)
        self.interval_s = interval_s
        self.loop = loop
        self.realtime = realtime
        self.stats = DecodeStats()
        self._index = 0
        self._next_at = time.monotonic()  # kept across loops so the interval holds at the wrap

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder {self.folder} not found", "not_found", permanent=True)
        self.files = list_images(self.folder)

    def frames(self) -> Iterator[Frame]:
        for path in self.files:
            if self.realtime and not self._sleep(self._next_at - time.monotonic()):
                return
            if self.closed:
                return
            self._next_at = time.monotonic() + self.interval_s
            t0 = time.perf_counter()
            try:
                image = read_image(path)
            except SourceError as exc:
                self.stats.decode_errors += 1
                self.stats.last_error = str(exc)
                log.warning("camera %s: skipping %s", self.camera_id, exc)
                continue
            self.stats.decode_s += time.perf_counter() - t0
            self.stats.packets += 1
            self.stats.frames_decoded += 1
            self.stats.frames_emitted += 1
            self.stats.last_packet_mono = time.monotonic()
            yield Frame(self.camera_id, self._index, datetime.now(UTC), image, path.name)
            self._index += 1

    def __iter__(self) -> Iterator[Frame]:
        while not self.closed:
            self.open()
            yield from self.frames()
            if not self.loop:
                return


class StreamClock:
    """Maps stream time (seconds of presentation time) onto wall-clock time.

    Files: anchored when opened (their first frame is "now"), then stream time runs on.
    Live streams: wall = stream time + the smallest offset (arrival - stream time) seen so far.
    The least-delayed packet is the best estimate of when the camera sent it: packets buffered
    while FFmpeg probed the stream, or held up by the network, arrive late and would otherwise
    stamp every later frame late (or, anchored on them, in the future). When arrivals run later
    than the mapping by more than ``max_drift_s`` for good (the camera restarted its timestamps,
    or its clock is slow) the offset is re-anchored.
    """

    def __init__(self, live: bool, max_drift_s: float = 5.0) -> None:
        self.live = live
        self.max_drift_s = max_drift_s
        self.resets = 0
        self._offset: float | None = None  # wall seconds (epoch) - stream seconds, live streams
        self._anchor: tuple[float, float, float] | None = None  # stream s, monotonic s, epoch s (files)

    def reset(self) -> None:
        self._offset = None
        self._anchor = None

    def observe(self, t: float) -> None:
        """A packet of stream time ``t`` arrived now (live streams)."""
        offset = time.time() - t
        if self._offset is None or offset < self._offset:
            self._offset = offset
        elif offset - self._offset > self.max_drift_s:
            self._offset = offset
            self.resets += 1

    def _file_anchor(self, t: float) -> tuple[float, float, float]:
        if self._anchor is None:
            self._anchor = (t, time.monotonic(), time.time())
        return self._anchor

    def due_mono(self, t: float) -> float:
        """Monotonic time at which stream time ``t`` should be shown (files played in real time)."""
        t0, mono0, _ = self._file_anchor(t)
        return mono0 + (t - t0)

    def wall(self, t: float) -> datetime:
        if self.live:
            if self._offset is None:
                self.observe(t)
            assert self._offset is not None
            return datetime.fromtimestamp(t + self._offset, UTC)
        t0, _, epoch0 = self._file_anchor(t)
        return datetime.fromtimestamp(epoch0 + (t - t0), UTC)


def _classify(exc: BaseException, live: bool, opening: bool) -> tuple[ErrorKind, str]:
    """A word for what went wrong and a hint for the operator on how to fix it."""
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return "auth", "check the camera user name and password (password_env / password_file)"
    if isinstance(exc, PermissionError):
        if live:
            return "protocol", "the server refused the request: check the stream path and the URL scheme"
        return "permission", "the file is not readable by this user: check its permissions"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return "not_found", "check the stream path in the URL (the camera answered but has no such stream)"
    if isinstance(exc, FileNotFoundError):
        return "not_found", "check the path"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "nothing listens on that host and port: check the port and that the camera is on"
    if isinstance(exc, av.error.ExitError | TimeoutError):
        if opening:
            return "timeout", "the camera did not answer in time: check the address, network and firewall"
        return "stalled", "the stream stopped delivering data"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EIO):
        return "unreachable", "check the host name and the network route to the camera"
    if isinstance(exc, av.error.ConnectionResetError | av.error.EOFError | av.error.BrokenPipeError):
        return "ended", "the camera closed the connection"
    if isinstance(exc, av.error.InvalidDataError):
        if live:
            return "protocol", (
                "the server closed the connection or sent no valid answer: check that host and port are the "
                "camera's streaming port and that the URL scheme matches"
            )
        return "corrupt", "the file is damaged, truncated or not a video"
    unsupported = av.error.DecoderNotFoundError | av.error.PatchWelcomeError | av.error.DemuxerNotFoundError
    if isinstance(exc, unsupported):
        return "unsupported", "this FFmpeg build cannot read the codec or format; change the camera's codec"
    return "other", "see the FFmpeg message"


def _frame_time(frame: av.VideoFrame, default: float) -> float:
    """A decoded frame's stream time; drained frames may have none (NaN), then the caller's guess."""
    t = frame.time
    return default if t is None or t != t else float(t)


class AVSource(_Stoppable):
    """A video file or network stream decoded by FFmpeg (PyAV), sampled every ``interval_s``.

    Files are played in real time by default (they stand in for a camera); network streams are
    read as they arrive. Frame timestamps are stream time mapped to wall-clock time
    (:class:`StreamClock`).
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
        *,
        sampling: SamplingMode = "fps",
        keyframe_wait_s: float | None = None,
        transport: Literal["tcp", "udp"] = "tcp",
        format: str | None = None,
        options: dict[str, str] | None = None,
        decode_threads: int = 1,
        max_clock_drift_s: float = 5.0,
    ) -> None:
        super().__init__()
        self.camera_id = camera_id
        self.url = url
        self.interval_s = interval_s
        self.loop = loop
        self.live = url.startswith(NETWORK_SCHEMES)
        self.realtime = realtime and not self.live
        self.timeouts = (open_timeout_s, read_timeout_s)
        self.sampling: SamplingMode = sampling
        if keyframe_wait_s is None:  # interval 0 asks for every keyframe, however far apart
            keyframe_wait_s = max(interval_s, 2.0) if interval_s > 0 else math.inf
        self.keyframe_wait_s = keyframe_wait_s
        self.transport = transport
        self.format = format
        self.extra_options = dict(options or {})
        self.decode_threads = decode_threads
        self.clock = StreamClock(self.live, max_clock_drift_s)
        self.stats = DecodeStats()
        self._container: av.container.InputContainer | None = None
        self._index = 0
        self._bad_run = 0  # consecutive packets that failed to decode
        if not self.live and not Path(url).is_file():
            raise SourceError(f"video file {url} not found", "not_found", permanent=True)

    @property
    def name(self) -> str:
        return redact(self.url)

    def _scrub(self, exc: BaseException) -> str:
        """FFmpeg's messages quote the URL, credentials included."""
        text = str(exc).replace(self.url, self.name)
        parts = urlsplit(self.url)
        for secret in (parts.password, unquote(parts.password or "") or None):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, exc: BaseException, opening: bool, elapsed_s: float = 0.0) -> SourceError:
        kind, hint = _classify(exc, self.live, opening)
        if opening and self.live and kind in ("protocol", "other") and elapsed_s >= 0.95 * self.timeouts[0]:
            # FFmpeg reports an interrupted RTSP handshake as invalid data; the clock says what it was.
            kind, hint = _classify(TimeoutError(), self.live, opening)
        verb = "cannot open" if opening else "reading"
        what = self._scrub(exc)
        if opening and kind == "timeout":
            what = f"no answer within {self.timeouts[0]:g} s"
        elif not opening and kind == "stalled":
            what = f"no data for {self.timeouts[1]:g} s"
        permanent = not self.live and kind in ("not_found", "corrupt", "unsupported", "permission")
        return SourceError(f"{verb} {self.name}: {what} ({hint})", kind, permanent)

    def _options(self) -> dict[str, str]:
        options: dict[str, str] = {}
        if self.live:
            # FFmpeg probes 5 s of a stream by default before the first frame; 1 s finds a camera's
            # video parameters and makes (re)connecting that much faster.
            options["analyzeduration"] = "1000000"
        if self.url.startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = self.transport
            # FFmpeg's own socket timeout (microseconds) as a second line behind PyAV's interrupt.
            options["timeout"] = str(int(self.timeouts[1] * 1_000_000))
        options.update(self.extra_options)
        return options

    def open(self) -> None:
        self._close_container()
        t0 = time.monotonic()
        try:
            container = av.open(
                self.url, mode="r", format=self.format, options=self._options(), timeout=self.timeouts
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise self._error(exc, opening=True, elapsed_s=time.monotonic() - t0) from None
        if not container.streams.video:
            container.close()
            raise SourceError(
                f"{self.name} has no video stream (audio only, or the wrong URL)",
                "unsupported",
                permanent=not self.live,
            )
        self._container = container
        self.clock.reset()

    def describe(self) -> dict[str, Any]:
        """What the opened stream says about itself (for `cityeye streams probe` and logs)."""
        if self._container is None:
            raise RuntimeError("AVSource.describe() before open()")
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        return {
            "format": self._container.format.name,
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": None if rate is None else round(float(rate), 3),
            "live": self.live,
        }

    def _close_container(self) -> None:
        if self._container is not None:
            # Closing a broken connection may fail; it is gone either way.
            with contextlib.suppress(av.error.FFmpegError, OSError):
                self._container.close()
            self._container = None

    def close(self) -> None:
        """Ask the reading thread to stop; it closes the container itself at the next packet."""
        super().close()

    def __iter__(self) -> Iterator[Frame]:
        while not self.closed:
            self.open()
            yield from self.frames()
            if not self.loop:
                return

    def frames(self) -> Iterator[Frame]:
        container = self._container
        if container is None:
            raise RuntimeError("AVSource.frames() before open()")
        try:
            yield from self._sample(container)
        finally:
            self._close_container()

    # -- sampling ---------------------------------------------------------------------------------

    def _emit(self, frame: av.VideoFrame, t: float) -> Frame:
        t0 = time.perf_counter()
        image = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.frames_emitted += 1
        self._index += 1
        return Frame(self.camera_id, self._index - 1, self.clock.wall(t), image, stream_time_s=t)

    def _decode(self, codec: VideoCodecContext, packet: Packet[VideoStream] | None) -> list[av.VideoFrame]:
        t0 = time.perf_counter()
        try:
            frames = codec.decode(packet)
        except av.error.FFmpegError as exc:
            self.stats.decode_s += time.perf_counter() - t0
            self.stats.decode_errors += 1
            self.stats.last_error = self._scrub(exc)
            self._bad_run += 1
            if self._bad_run >= MAX_CONSECUTIVE_DECODE_ERRORS:
                raise SourceError(
                    f"reading {self.name}: {self._bad_run} packets in a row failed to decode "
                    f"({self.stats.last_error})",
                    "corrupt",
                    permanent=not self.live,
                ) from None
            return []
        self.stats.decode_s += time.perf_counter() - t0
        self.stats.frames_decoded += len(frames)
        if frames:
            self._bad_run = 0
        return frames

    def _wait_until(self, t: float) -> bool:
        return not self.realtime or self._sleep(self.clock.due_mono(t) - time.monotonic())

    def _sample(self, container: av.container.InputContainer) -> Iterator[Frame]:
        stream = container.streams.video[0]
        codec = stream.codec_context
        # A camera found to space its keyframes too far apart stays on full decoding across
        # reconnects, until a measured keyframe period says it was reconfigured.
        period = self.stats.keyframe_period_s
        keyframes_only = self.sampling == "keyframe" and not (
            self.stats.full_decode and (period is None or period > self.keyframe_wait_s)
        )
        if keyframes_only:
            self.stats.full_decode = False
        codec.thread_count = 1 if keyframes_only else self.decode_threads
        codec.thread_type = "SLICE" if keyframes_only else "AUTO"
        time_base = stream.time_base
        fallback_step = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        self._bad_run = 0
        session_packets = 0
        next_due: float | None = None  # stream time of the next wanted frame (grid of interval_s)
        last_t: float | None = None
        last_key_t: float | None = None
        # Packets of the keyframe being collected: one picture may come as several packets of the
        # same time (slices, parameter sets), and the decoder needs them all.
        group: list[Packet[VideoStream]] = []
        group_t = 0.0
        decoding_all = not keyframes_only
        started = False  # in full decoding, the decoder starts at a keyframe
        first_t: float | None = None
        last_ft: float | None = None  # stream time of the last decoded frame

        def due(t: float) -> bool:
            return next_due is None or t >= next_due - 1e-6

        def advance(t: float) -> None:
            nonlocal next_due
            step = self.interval_s
            nxt = (t if next_due is None else next_due) + step
            next_due = nxt if nxt > t else t + step

        def flush_group() -> Iterator[Frame]:
            nonlocal group
            packets, group = group, []
            frames: list[av.VideoFrame] = []
            for p in packets:
                frames += self._decode(codec, p)
            frames += self._decode(codec, None)  # drain: B-frame streams hold the picture back
            codec.flush_buffers()
            if frames and self._wait_until(group_t) and not self.closed:
                advance(group_t)
                yield self._emit(frames[-1], group_t)

        try:
            for packet in container.demux(stream):
                if self.closed:
                    return
                if packet.size == 0:  # end of stream marker
                    continue
                stats = self.stats
                stats.packets += 1
                session_packets += 1
                stats.bytes += packet.size
                stats.last_packet_mono = time.monotonic()
                if packet.pts is not None and time_base is not None:
                    t = float(packet.pts * time_base)
                elif packet.dts is not None and time_base is not None:
                    t = float(packet.dts * time_base)
                else:
                    t = (last_t + fallback_step) if last_t is not None else 0.0
                if last_t is not None and (t < last_t - 1.0 or t > last_t + max(60.0, 4 * self.interval_s)):
                    # Timestamps jumped (camera restart, wrap-around): start a new grid and clock.
                    log.info("camera %s: stream time jumped %.1f s -> %.1f s", self.camera_id, last_t, t)
                    next_due = None
                    self.clock.reset()
                    stats.clock_resets += 1
                last_t = t
                if self.live:
                    self.clock.observe(t)
                if first_t is None:
                    first_t = t

                if decoding_all:
                    if not started:
                        if not packet.is_keyframe:  # nothing decodes before the first keyframe
                            continue
                        started = True
                    if packet.is_keyframe:
                        if last_key_t is not None and t > last_key_t:
                            stats.keyframe_period_s = t - last_key_t
                        last_key_t = t
                    for frame in self._decode(codec, packet):
                        guess = last_ft + fallback_step if last_ft is not None else t
                        ft = last_ft = _frame_time(frame, guess)
                        if due(ft):
                            if not self._wait_until(ft) or self.closed:
                                return
                            advance(ft)
                            yield self._emit(frame, ft)
                    continue

                if group:
                    if packet.pts is None or abs(t - group_t) < 1e-9:
                        group.append(packet)
                        continue
                    yield from flush_group()
                if packet.is_keyframe:
                    if last_key_t is not None and t > last_key_t:
                        stats.keyframe_period_s = t - last_key_t
                    last_key_t = t
                    if due(t):
                        group, group_t = [packet], t
                elif t - (waited := first_t if next_due is None else next_due) > self.keyframe_wait_s:
                    log.warning(
                        "camera %s: no keyframe %.1f s past the sampling interval (keyframe period %s); "
                        "decoding every frame from the next keyframe on, which costs more CPU: set the "
                        "camera's keyframe (I-frame, GOP) interval to at most %.0f s",
                        self.camera_id,
                        t - waited,
                        f"{stats.keyframe_period_s:.1f} s" if stats.keyframe_period_s else "unknown",
                        self.keyframe_wait_s,
                    )
                    stats.full_decode = True
                    decoding_all = True
            if group:
                yield from flush_group()
            elif decoding_all and started:
                for frame in self._decode(codec, None):
                    guess = (last_ft if last_ft is not None else 0.0) + fallback_step
                    ft = last_ft = _frame_time(frame, guess)
                    if due(ft) and self._wait_until(ft) and not self.closed:
                        advance(ft)
                        yield self._emit(frame, ft)
        except av.error.FFmpegError as exc:
            if self.closed:
                return
            raise self._error(exc, opening=False) from None
        if self.closed:
            return
        if self.live:
            raise SourceError(
                f"reading {self.name}: the stream ended (the camera or server closed it)", "ended"
            )
        declared = stream.frames
        if declared > 1 and session_packets < declared - 1:
            # The index promised more: the file was cut short (copy interrupted, disk full).
            raise SourceError(
                f"reading {self.name}: the file ends after {session_packets} of its {declared} frames "
                f"({last_t or 0.0:.1f} s): it is truncated or damaged",
                "corrupt",
                permanent=True,
            )


def open_source(camera: CameraConfig) -> FrameSource:
    """The source of a configured camera, with its credentials and its mode's sampling."""
    src = camera.source
    sampling: SamplingMode
    if camera.sampling == "auto":
        sampling = "keyframe" if camera.mode == "parking" else "fps"
    else:
        sampling = camera.sampling
    if src.startswith(NETWORK_SCHEMES):
        if urlsplit(src).password is not None:
            log.warning(
                "camera %s: the source URL holds a password; put it in $%s or password_file instead",
                camera.id,
                camera.password_env or "CITYEYE_CAMERA_PASSWORD_<ID>",
            )
        url = with_credentials(src, camera.username, camera.password(camera.id))
        return AVSource(
            camera.id,
            url,
            camera.interval_s,
            loop=False,
            open_timeout_s=camera.open_timeout_s,
            read_timeout_s=camera.read_timeout_s,
            sampling=sampling,
            keyframe_wait_s=camera.keyframe_wait_s,
            transport=camera.transport,
            format=camera.format,
            options=camera.ffmpeg_options,
            decode_threads=camera.decode_threads,
        )
    path = Path(src).expanduser()
    if path.is_dir():
        return ImageFolderSource(
            camera.id, path, camera.interval_s, loop=camera.loop, realtime=camera.realtime
        )
    if path.is_file():
        return AVSource(
            camera.id,
            str(path),
            camera.interval_s,
            loop=camera.loop,
            realtime=camera.realtime,
            sampling=sampling,
            keyframe_wait_s=camera.keyframe_wait_s,
            format=camera.format,
            options=camera.ffmpeg_options,
            decode_threads=camera.decode_threads,
        )
    raise SourceError(
        f"camera {camera.id}: source {src!r} not found: it is neither an existing file, a folder, nor "
        f"an rtsp://, http(s):// or rtmp:// URL",
        "not_found",
        permanent=True,
    )
