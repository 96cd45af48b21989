"""One supervisor per camera: keeps its source open, notices stalls, reconnects with backoff.

States: ``connecting -> streaming -> stalled -> reconnecting -> streaming ...``; a failed attempt
is ``error`` with the reason. Every transition is logged and handed to ``on_state`` (the worker
publishes it as the camera's retained MQTT status), except repeats: a camera that keeps failing
the same way reports its error once and then retries quietly, backing off exponentially (with
jitter, so cameras behind one rebooted switch do not return in lockstep) up to ``backoff_max_s``.
A dead camera therefore costs one connection attempt per minute and nothing in between.

Files end (``ended``) unless they loop; a missing or corrupt file is a permanent error and the
supervisor gives up on it, so the other cameras of the worker keep running.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cityeye.streams.frame import Frame
from cityeye.streams.sources import FrameSource, SourceError

log = logging.getLogger(__name__)


class StreamState(StrEnum):
    """Values shared with ``events.schema.CameraStatus`` where they overlap (same strings)."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    ERROR = "error"
    ENDED = "ended"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class StateChange:
    camera_id: str
    state: StreamState
    detail: str | None
    at: datetime
    error_kind: str | None = None


class Backoff:
    """Exponential backoff with jitter: initial, 2x, 4x ... up to ``max_s``, each minus up to ``jitter``."""

    def __init__(
        self, initial_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None
    ) -> None:
        if initial_s <= 0 or max_s < initial_s or not 0 <= jitter <= 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s and 0 <= jitter <= 1")
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** min(self.failures, 60))
        self.failures += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.failures = 0


class StreamSupervisor:
    """Runs one source in its own thread and hands its frames to ``on_frame``.

    ``on_frame`` runs in the supervisor's thread and must not block (the worker puts the frame
    in a bounded queue). ``on_state`` gets each reported state change.
    """

    def __init__(
        self,
        source: FrameSource,
        on_frame: Callable[[Frame], None],
        on_state: Callable[[StateChange], None] | None = None,
        backoff: Backoff | None = None,
        stable_after_s: float = 30.0,
    ) -> None:
        self.source = source
        self.camera_id = source.camera_id
        self.on_frame = on_frame
        self.on_state = on_state
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.stable_after_s = min(stable_after_s, self.backoff.max_s)
        self.state = StreamState.CONNECTING
        self.detail: str | None = None
        self.error: str | None = None
        """The last error, kept after recovery until the next one (health reports show it)."""
        self.error_kind: str | None = None
        self.reconnects = 0
        self.attempts = 0
        self._reported: tuple[StreamState, str | None] | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"stream-{self.camera_id}", daemon=True)
        self.finished = threading.Event()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.source.close()

    def join(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _set(self, state: StreamState, detail: str | None = None, kind: str | None = None) -> None:
        self.state = state
        self.detail = detail
        if (state, detail) == self._reported:
            log.debug("camera %s: still %s (%s)", self.camera_id, state.value, detail)
            return
        self._reported = (state, detail)
        level = logging.WARNING if state in (StreamState.ERROR, StreamState.STALLED) else logging.INFO
        log.log(level, "camera %s: %s%s", self.camera_id, state.value, f" ({detail})" if detail else "")
        if self.on_state is not None:
            try:
                self.on_state(StateChange(self.camera_id, state, detail, datetime.now(UTC), kind))
            except Exception:  # a failing listener must not stop the camera
                log.exception("camera %s: state listener failed", self.camera_id)

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; False once stopped."""
        return not self._stop.wait(max(0.0, seconds))

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must not pass silently: report it and end this camera
            log.exception("camera %s: supervisor failed", self.camera_id)
            self.error = f"{type(exc).__name__}: {exc}"
            self._set(StreamState.ERROR, self.error, "other")
        finally:
            self.finished.set()

    def _loop(self) -> None:
        lost: str | None = None  # why the last session ended, while we try to get it back
        failed_same: str | None = None  # the error of the last failed attempt (repeats stay quiet)
        while not self._stop.is_set():
            self.attempts += 1
            if self.attempts == 1:
                self._set(StreamState.CONNECTING)
            elif lost is not None:
                self.reconnects += 1
                self._set(StreamState.RECONNECTING, lost)
                lost = None
            else:
                self.reconnects += 1
            try:
                self.source.open()
            except SourceError as exc:
                if self._stop.is_set():
                    break
                self._failed(exc, quiet=str(exc) == failed_same)
                failed_same = str(exc)
                if exc.permanent:
                    return  # stays in error: retrying a missing or damaged file cannot help
                if not self._wait(self.backoff.next_delay()):
                    break
                continue
            failed_same = None
            opened = time.monotonic()
            self._set(StreamState.STREAMING)
            try:
                for frame in self.source.frames():
                    self.on_frame(frame)
                    if self._stop.is_set():
                        break
            except SourceError as exc:
                if self._stop.is_set():
                    break
                if time.monotonic() - opened >= self.stable_after_s:
                    self.backoff.reset()
                self.error, self.error_kind = str(exc), exc.kind
                if exc.permanent:
                    self._set(StreamState.ERROR, str(exc), exc.kind)
                    return
                delay = self.backoff.next_delay()
                if exc.kind == "stalled":
                    self._set(StreamState.STALLED, str(exc), exc.kind)
                    lost = f"{exc}; reopening"
                else:
                    lost = f"{exc}; reopening in {delay:.1f} s"
                    self._set(StreamState.RECONNECTING, lost, exc.kind)
                    lost = None
                if not self._wait(delay):
                    break
                continue
            if self._stop.is_set() or self.source.closed:
                break
            if self.source.live:  # a live source's frames() only returns when it was closed
                break
            if self.source.loop:
                self.backoff.reset()
                continue
            self._set(StreamState.ENDED, "end of file")
            return
        self._set(StreamState.STOPPED)

    def _failed(self, exc: SourceError, quiet: bool) -> None:
        self.error, self.error_kind = str(exc), exc.kind
        if quiet:
            log.debug("camera %s: attempt %d failed again: %s", self.camera_id, self.attempts, exc)
            return
        suffix = "" if exc.permanent else f"; retrying with backoff up to {self.backoff.max_s:g} s"
        self._set(StreamState.ERROR, f"{exc}{suffix}", exc.kind)
