"""Push changed NGSI-LD entities to a webhook or a context broker, with retries.

Changes are coalesced by entity id (the latest state wins), so the backlog is bounded by the
number of entities however long the receiver is away; a batch is retried with exponential
backoff and dropped, counted, after ``max_attempts``. The next change of an entity sends its
whole state again, so a dropped batch heals itself.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any

from cityeye.api.config import PushConfig
from cityeye.api.index import Snapshot, ZoneIndex
from cityeye.api.metrics import ApiMetrics
from cityeye.api.ngsi import CONTEXT, lot_urn, parking_spot, urn

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0


class Pusher:
    def __init__(self, cfg: PushConfig, index: ZoneIndex, metrics: ApiMetrics | None = None) -> None:
        self.cfg = cfg
        self.index = index
        self.metrics = metrics
        self._pending: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push", daemon=True)
        self.sent = 0
        self.failed = 0
        url = str(cfg.url).rstrip("/")
        self.target = url + "/ngsi-ld/v1/entityOperations/upsert" if cfg.mode == "ngsi-ld" else url

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.cfg.timeout_s + 5)

    def on_snapshot(self, old: Snapshot, new: Snapshot) -> None:
        from cityeye.api.ngsi import off_street_parking

        now = self.index.now()
        changed: list[dict[str, Any]] = []
        lots: set[str] = set()
        for uid, z in new.zones.items():
            if old.zones.get(uid) is z:
                continue
            if z.lot is not None:
                lots.add(lot_urn(z.site, z.lot))
            elif z.kind == "area":
                lots.add(urn("OffStreetParking", z.site, z.camera, z.zone_id))
            if z.kind == "space":
                stale = self.index.liveness.zone_stale(z, new.cameras.get((z.site, z.camera)), now)
                changed.append(parking_spot(z, stale))
        if lots:
            changed += [e for e in off_street_parking(self.index, new, now) if e["id"] in lots]
        if changed:
            self.offer(changed)

    def offer(self, entities: list[dict[str, Any]]) -> None:
        with self._lock:
            for e in entities:
                self._pending[e["id"]] = e
            n = len(self._pending)
        if self.metrics:
            self.metrics.push_pending.set(n)

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            batch = list(self._pending.values())
            self._pending.clear()
        return batch

    def _body(self, batch: list[dict[str, Any]]) -> tuple[bytes, str]:
        if self.cfg.mode == "ngsi-ld":
            return json.dumps([{**e, "@context": CONTEXT} for e in batch]).encode(), "application/ld+json"
        return json.dumps({"entities": batch}).encode(), "application/json"

    def _send(self, batch: list[dict[str, Any]]) -> None:
        body, ctype = self._body(batch)
        req = urllib.request.Request(self.target, data=body, method="POST", headers={"Content-Type": ctype})
        with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as r:
            r.read()

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.batch_interval_s):
            batch = self._take()
            if not batch:
                continue
            delay = self.cfg.backoff_s
            for attempt in range(1, self.cfg.max_attempts + 1):
                try:
                    self._send(batch)
                except (OSError, urllib.error.URLError) as exc:
                    log.warning(
                        "push to %s failed (attempt %d/%d): %s",
                        self.target,
                        attempt,
                        self.cfg.max_attempts,
                        exc,
                    )
                    if attempt == self.cfg.max_attempts or self._stop.wait(delay):
                        self.failed += 1
                        if self.metrics:
                            self.metrics.push.labels("dropped").inc()
                        log.error("push to %s: dropped a batch of %d entities", self.target, len(batch))
                        break
                    if self.metrics:
                        self.metrics.push.labels("retried").inc()
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    # Newer states of the same entities replace the ones being retried.
                    with self._lock:
                        newer = dict(self._pending)
                        self._pending.clear()
                    batch = list({**{e["id"]: e for e in batch}, **newer}.values())
                else:
                    self.sent += 1
                    if self.metrics:
                        self.metrics.push.labels("sent").inc()
                    break
            if self.metrics:
                with self._lock:
                    self.metrics.push_pending.set(len(self._pending))
