"""Live updates for browser pages and operators, as Server-Sent Events.

Changes are derived from the zone index (old snapshot -> new snapshot), not from the MQTT
messages this replica happened to consume, so every replica streams every change even when a
shared subscription splits the ingest between them. A camera that falls silent is announced by
the periodic :meth:`LiveFeed.tick`, since no message marks that moment.

Each client has a bounded queue; one that reads too slowly is dropped (its ``EventSource``
reconnects and re-reads the state over REST) rather than holding memory without bound.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cityeye.api.index import Snapshot, ZoneIndex, iso
from cityeye.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

QUEUE_SIZE = 2000
KEEPALIVE_S = 15.0
KINDS = frozenset({"zone", "zone_removed", "lot", "camera", "traffic"})
TRAFFIC_WINDOW_S = 600
"""Per-minute traffic rows newer than this are streamed as they change (late bins included)."""
PUBLIC_KINDS = frozenset({"zone", "zone_removed", "lot"})


@dataclass(eq=False)
class Subscriber:
    loop: asyncio.AbstractEventLoop
    kinds: frozenset[str]
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    dropped: bool = False


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class LiveFeed:
    def __init__(self, index: ZoneIndex, metrics: ApiMetrics | None = None) -> None:
        self.index = index
        self.metrics = metrics
        self._subs: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._offline: dict[tuple[str, str], bool] = {}
        self._sent_traffic: dict[tuple[str, int, str, str], int] = {}

    @property
    def clients(self) -> int:
        return len(self._subs)

    def subscribe(self, kinds: frozenset[str]) -> Subscriber:
        sub = Subscriber(asyncio.get_running_loop(), kinds)
        with self._lock:
            self._subs.add(sub)
        if self.metrics:
            self.metrics.live_clients.set(len(self._subs))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs.discard(sub)
        if self.metrics:
            self.metrics.live_clients.set(len(self._subs))

    def _put(self, sub: Subscriber, msg: str) -> None:
        """Runs on the subscriber's event loop."""
        if sub.dropped:
            return
        try:
            sub.queue.put_nowait(msg)
        except asyncio.QueueFull:
            sub.dropped = True
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
            if self.metrics:
                self.metrics.live_dropped.inc()
            log.info("live: dropped a client that read too slowly")

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """From any thread."""
        with self._lock:
            subs = [s for s in self._subs if kind in s.kinds]
        if not subs:
            return
        msg = sse(kind, data)
        for s in subs:
            try:
                s.loop.call_soon_threadsafe(self._put, s, msg)
            except RuntimeError:  # that loop is closed: the client is gone
                self.unsubscribe(s)

    # -- change detection (index thread) --------------------------------------------------------

    def on_snapshot(self, old: Snapshot, new: Snapshot) -> None:
        if not self._subs:
            return
        now = self.index.now()
        lots: set[tuple[str, str]] = set()
        for uid, z in new.zones.items():
            if old.zones.get(uid) is not z:
                out = self.index.zone_out(new, uid, now)
                if out is not None:
                    self.publish("zone", out)
                if z.lot is not None:
                    lots.add((z.site, z.lot))
        for uid, z in old.zones.items():
            if uid not in new.zones:
                self.publish("zone_removed", {"id": uid})
                if z.lot is not None:
                    lots.add((z.site, z.lot))
        if lots:
            for lot in self.index.lots(new, now):
                if (lot["site"], lot["lot"]) in lots:
                    self.publish("lot", lot)
        self.tick(new)
        changed = [key for key, cam in new.cameras.items() if old.cameras.get(key) is not cam]
        for key in changed:
            self.publish("camera", camera_json(new.cameras[key], self.index, now))
        if changed and self._wants("traffic"):
            self._traffic(changed, now)

    def _wants(self, kind: str) -> bool:
        with self._lock:
            return any(kind in s.kinds for s in self._subs)

    def _traffic(self, cameras: list[tuple[str, str]], now: datetime) -> None:
        """Per-minute counts of lines whose camera changed, sent when they differ from what was sent.

        Read from the database, not from this replica's consumer, so every replica streams every
        camera's counts; what was sent is remembered for the recent window only.
        """
        since = now - timedelta(seconds=TRAFFIC_WINDOW_S)
        rows = self.index.store.traffic(start=since, bucket_s=60, by=("direction", "class"), cameras=cameras)
        for p in rows:
            key = (p.line, int(p.start.timestamp()), p.direction or "", p.vclass or "")
            if self._sent_traffic.get(key) == p.count:
                continue
            self._sent_traffic[key] = p.count
            self.publish(
                "traffic",
                {
                    "line_id": p.line,
                    "start": iso(p.start),
                    "direction": p.direction,
                    "vehicle_class": p.vclass,
                    "count": p.count,
                },
            )
        cutoff = int(since.timestamp())
        for key in [k for k in self._sent_traffic if k[1] < cutoff]:
            del self._sent_traffic[key]

    def tick(self, snap: Snapshot) -> None:
        """Announce cameras whose liveness flipped (a silence passing the limit has no message)."""
        now = self.index.now()
        for key, cam in snap.cameras.items():
            off = self.index.liveness.camera_offline(cam, now)
            if self._offline.get(key) is not None and self._offline[key] != off:
                self.publish("camera", camera_json(cam, self.index, now))
            self._offline[key] = off
        for key in set(self._offline) - set(snap.cameras):
            del self._offline[key]

    async def stream(self, kinds: frozenset[str]) -> AsyncIterator[str]:
        sub = self.subscribe(kinds)
        try:
            yield "retry: 3000\n\n"
            while True:
                try:
                    msg = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if msg is None:
                    return
                yield msg
        finally:
            self.unsubscribe(sub)


def camera_json(cam: Any, index: ZoneIndex, now: Any) -> dict[str, Any]:
    health = cam.health or {}
    silent = None if cam.last_heard_at is None else round((now - cam.last_heard_at).total_seconds(), 1)
    return {
        "id": f"{cam.site}:{cam.camera}",
        "site": cam.site,
        "camera": cam.camera,
        "status": cam.status,
        "detail": cam.detail,
        "online": not index.liveness.camera_offline(cam, now) and cam.status not in (None, "offline"),
        "status_at": iso(cam.status_at),
        "last_seen_at": iso(cam.last_seen_at),
        "last_heard_at": iso(cam.last_heard_at),
        "silent_s": silent,
        "fps": health.get("fps"),
        "last_frame_age_s": health.get("last_frame_age_s"),
        "reconnects": health.get("reconnects"),
        "health": cam.health,
        "health_at": iso(cam.health_at),
        "snapshot_at": iso(cam.snapshot_at),
    }
