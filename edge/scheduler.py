"""Fair sharing of one detector between many cameras.

Each camera has a small bounded queue: when the detector falls behind, a camera's oldest frame is
dropped (and counted), because a parking decision on a fresh frame is worth more than one on a
stale frame. The detector thread takes frames of *different* cameras in least-recently-served
order, so under overload every camera is served in turn (each waits at most ``ceil(N / batch)``
detector runs) instead of the busiest cameras starving the quiet ones; frames of several cameras
taken together are what ``Detector.detect_batch`` runs in one session call.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

from cityeye.streams.frame import Frame


@dataclass
class _Lane:
    queue: deque[Frame]
    order: int
    lossless: bool = False
    """Offline sources (files read as fast as possible) wait for room instead of dropping."""
    served: int = 0
    """Order number of the last time this camera was served (0 = never)."""


class FairScheduler:
    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}
        self._cond = threading.Condition()
        self._ticket = itertools.count(1)
        self._in_flight = 0
        self._closed = False

    def add_camera(self, camera_id: str, queue_size: int, lossless: bool = False) -> None:
        """``lossless``: :meth:`put` waits for room instead of dropping (a file analysed offline
        must not lose frames to its own speed; a live camera must not fall behind real time)."""
        with self._cond:
            if camera_id in self._lanes:
                raise ValueError(f"camera {camera_id!r} is already scheduled")
            self._lanes[camera_id] = _Lane(deque(maxlen=queue_size), len(self._lanes), lossless)

    def remove_camera(self, camera_id: str) -> None:
        """Forget a camera and its queued frames (a camera removed at run time must not leak)."""
        with self._cond:
            self._lanes.pop(camera_id, None)
            self._cond.notify_all()

    def put(self, frame: Frame) -> bool:
        """Queue a frame; True when the camera's oldest waiting frame was dropped to make room."""
        with self._cond:
            lane = self._lanes.get(frame.camera_id)
            if lane is not None and lane.lossless:
                waiting: _Lane = lane
                self._cond.wait_for(
                    lambda: (
                        self._closed
                        or self._lanes.get(frame.camera_id) is not waiting
                        or len(waiting.queue) < (waiting.queue.maxlen or 1)
                    )
                )
                lane = self._lanes.get(frame.camera_id)
            if lane is None or self._closed:
                return False
            dropped = len(lane.queue) == lane.queue.maxlen
            lane.queue.append(frame)  # a full deque drops from the left: the oldest frame
            self._cond.notify_all()
            return dropped

    def take(self, max_frames: int, timeout_s: float | None = None) -> list[Frame]:
        """Up to ``max_frames`` frames of different cameras, least recently served first.

        Waits up to ``timeout_s`` for the first frame; returns at once with what is queued
        (no waiting to fill a batch: under load, frames pile up while the detector runs anyway).
        Call :meth:`done` after the frames were processed.
        """
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._closed or any(lane.queue for lane in self._lanes.values()), timeout_s
            ):
                return []
            ready = [lane for lane in self._lanes.values() if lane.queue]
            ready.sort(key=lambda lane: (lane.served, lane.order))
            batch = []
            for lane in ready[: max(1, max_frames)]:
                batch.append(lane.queue.popleft())
                lane.served = next(self._ticket)
            self._in_flight += len(batch)
            self._cond.notify_all()  # lossless producers wait for the room just made
            return batch

    def done(self, n: int) -> None:
        with self._cond:
            self._in_flight -= n
            self._cond.notify_all()

    def depth(self, camera_id: str) -> int:
        with self._cond:
            lane = self._lanes.get(camera_id)
            return len(lane.queue) if lane is not None else 0

    def idle(self) -> bool:
        """Nothing queued and nothing being processed (all frames taken so far are done)."""
        with self._cond:
            return self._in_flight == 0 and not any(lane.queue for lane in self._lanes.values())

    def wait_idle(self, timeout_s: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: self._in_flight == 0 and not any(lane.queue for lane in self._lanes.values()),
                timeout_s,
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
