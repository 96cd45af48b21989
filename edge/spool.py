"""The edge's durable outbox: every event is on disk before it is sent, and leaves only on PUBACK.

One SQLite file (WAL) per camera. SQLite rather than a hand-written log because it gives atomic
commits that survive a killed process (and, with ``synchronous=FULL``, a power cut), ordered
replay through an AUTOINCREMENT key, and concurrent read-only access for health checks, with
no extra dependency. The queue is bounded by payload bytes and by age; when a bound is hit the
oldest events go first and every one is counted, so a long outage costs the oldest history,
never the newest state, and never silently.

Besides the queue the file keeps the last payload of every retained topic (so the state can be
republished when a broker comes back empty), counters that outlive restarts, and a boot
counter that makes event ids of a restarted worker differ from every id it used before.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

PENDING = 0
REJECTED = 1
"""The broker refused the message (e.g. ACL); kept for inspection, never re-sent, dropped by the bounds."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    created REAL NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    event_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value NOT NULL
);
"""

HOUSEKEEPING_S = 1.0
"""At most this often a put also applies the age bound and saves the heartbeat (``last_put``)."""

RECLAIM_PAGES = 256
"""Free pages (4 KiB each) beyond which an emptied queue is vacuumed."""

LOSS_LOG_EVERY_S = 60.0
"""Drops are logged when they start and then at most this often (each is counted regardless)."""

COUNTERS = ("dropped", "expired", "rejected", "acked", "enqueued")
"""Totals since the spool file was created (they survive restarts)."""


class SpoolError(ValueError):
    """The spool cannot be used; the message says why and what to do (the CLI exits 2 on it)."""


class SpoolLockedError(SpoolError):
    """Another process holds this spool: two writers would replay each other's events."""


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    seq: int
    topic: str
    payload: bytes
    retain: bool
    event_id: str
    created: float
    """Unix time the event was queued; the observation time itself is inside the payload."""


@dataclass(frozen=True, slots=True)
class RetainedState:
    topic: str
    payload: bytes
    event_id: str


@dataclass(frozen=True, slots=True)
class SpoolStats:
    queued: int
    """Events waiting for a PUBACK (rejected ones excluded)."""
    queued_bytes: int
    """Payload bytes in the file, the figure the size bound applies to (refused events included)."""
    oldest_created: float | None
    rejected_held: int | None
    """Events the broker refused that are still kept in the file (None: not counted)."""
    dropped: int
    """Dropped because the size bound was hit (oldest first)."""
    expired: int
    """Dropped because they were older than the age bound."""
    rejected: int
    acked: int
    enqueued: int
    boot: int
    last_put: float | None
    """Unix time of a recent write (saved at most every HOUSEKEEPING_S): a health check sees a hung
    worker by this going old."""

    @property
    def lost(self) -> int:
        """Everything that will never reach the broker: dropped, expired or refused."""
        return self.dropped + self.expired + self.rejected

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        now = time.time() if now is None else now
        return {
            "queued": self.queued,
            "queued_bytes": self.queued_bytes,
            "oldest_age_s": None if self.oldest_created is None else round(now - self.oldest_created, 3),
            "rejected_held": self.rejected_held,
            "dropped": self.dropped,
            "expired": self.expired,
            "rejected": self.rejected,
            "acked": self.acked,
            "enqueued": self.enqueued,
            "boot": self.boot,
            "last_put_age_s": None if self.last_put is None else round(now - self.last_put, 3),
        }


def spool_file(spool_dir: Path, site: str, camera: str) -> Path:
    """Where a camera's queue lives; the site level keeps two sites on one box apart."""
    return spool_dir / site / f"{camera}.sqlite"


class Spool:
    """A bounded, durable FIFO of MQTT messages for one camera. Thread-safe.

    ``put`` is called by the camera thread, ``pending``/``ack``/``reject`` by the sender; all
    share one connection under one lock (SQLite serialises writers anyway, and the
    statements are microseconds next to the commit).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        sync: Literal["full", "normal"] = "full",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0 or max_age_s <= 0:
            raise ValueError("spool bounds must be positive (mqtt.spool.max_mb, mqtt.spool.max_age_s)")
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._unlogged_loss = 0
        self._loss_logged_at = -LOSS_LOG_EVERY_S
        self._unsaved_puts = 0
        self._meta_saved_at = -math.inf
        self._expiry_checked_at = -math.inf
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                f"cannot create spool folder {path.parent}: {exc.strerror}; set mqtt.spool.dir to a "
                "writable folder that survives restarts (e.g. /var/lib/cityeye/spool)"
            ) from None
        self._lockfile = self._take_lock(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
            self._setup(sync)
        except sqlite3.DatabaseError as exc:
            self._release_lock()
            raise SpoolError(
                f"spool {path} cannot be opened as SQLite ({exc}); move the file aside to start an "
                "empty queue (its events are then not sent)"
            ) from None
        self._bytes, self._pending_rows = self._scan()
        self._counters = {k: self._meta(self._db, k) for k in COUNTERS}
        self.boot = self._bump_boot()
        self._closed = False
        if self._pending_rows:
            log.info("spool %s: %d event(s) from earlier runs to replay", path, self._pending_rows)

    # -- opening ---------------------------------------------------------------------------

    @staticmethod
    def _take_lock(path: Path) -> int:
        lock_path = path.with_name(path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SpoolLockedError(
                f"spool {path} is in use by another process (pid {holder}); run one worker per "
                "site and camera, or give each worker its own mqtt.spool.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lockfile, fcntl.LOCK_UN)
            os.close(self._lockfile)

    def _setup(self, sync: str) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"journal_mode WAL refused (got {mode}); is the folder on NFS?")
        db.execute(f"PRAGMA synchronous = {'FULL' if sync == 'full' else 'NORMAL'}")
        db.execute("PRAGMA journal_size_limit = 4194304")  # WAL shrinks back after an outage
        db.executescript(_SCHEMA)

    def _scan(self) -> tuple[int, int]:
        row = self._db.execute("SELECT COALESCE(SUM(length(payload)), 0), COUNT(*) FROM queue").fetchone()
        pending = self._db.execute("SELECT COUNT(*) FROM queue WHERE state = ?", (PENDING,)).fetchone()
        return int(row[0]), int(pending[0])

    def _bump_boot(self) -> int:
        with self._tx() as db:
            boot = self._meta(db, "boot") + 1
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('boot', ?)", (boot,))
        return boot

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the whole put (drops included) commits or none of it does."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            # The in-memory mirrors were updated along the way; the rollback undid the rows.
            self._bytes, self._pending_rows = self._scan()
            self._counters = {k: self._meta(db, k) for k in COUNTERS}
            self._counters["enqueued"] += self._unsaved_puts
            raise

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _add(self, db: sqlite3.Connection, key: str, n: int) -> None:
        """Bump a durable counter inside the caller's transaction (and its in-memory mirror)."""
        if n:
            self._counters[key] = self._counters.get(key, 0) + n
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (key, n),
            )

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")

    # -- bounds ----------------------------------------------------------------------------

    def _expire(self, db: sqlite3.Connection, now: float) -> int:
        """Drop events older than the age bound; queue order is age order, so only a prefix goes.

        Looks at the head of the queue only (an indexed range on seq), so a put stays O(1) while
        nothing is due.
        """
        cutoff = now - self.max_age_s
        head = db.execute("SELECT created FROM queue ORDER BY seq LIMIT 1").fetchone()
        if head is None or head[0] >= cutoff:
            return 0
        expired = 0
        while True:
            batch = db.execute(
                "SELECT seq, length(payload), state, created FROM queue ORDER BY seq LIMIT 256"
            ).fetchall()
            old = [r for r in batch if r[3] < cutoff]
            if not old:
                break
            db.execute("DELETE FROM queue WHERE seq <= ? AND created < ?", (old[-1][0], cutoff))
            pending = sum(r[2] == PENDING for r in old)
            self._bytes -= sum(r[1] for r in old)
            self._pending_rows -= pending
            expired += pending
            if len(old) < len(batch) or len(batch) < 256:
                break
        self._add(db, "expired", expired)
        return expired

    def _make_room(self, db: sqlite3.Connection, need: int) -> int:
        """Drop the oldest events until ``need`` more bytes fit; returns how many pending ones went."""
        dropped = 0
        while self._bytes + need > self.max_bytes:
            batch = db.execute(
                "SELECT seq, length(payload), state FROM queue ORDER BY seq LIMIT 256"
            ).fetchall()
            if not batch:
                break
            freed, last, pending = 0, batch[-1][0], 0
            for seq, size, state in batch:
                freed += size
                pending += state == PENDING
                if self._bytes - freed + need <= self.max_bytes:
                    last = seq
                    break
            db.execute("DELETE FROM queue WHERE seq <= ?", (last,))
            self._bytes -= freed
            self._pending_rows -= pending
            dropped += pending
        self._add(db, "dropped", dropped)
        return dropped

    # -- queue -----------------------------------------------------------------------------

    def put(self, topic: str, payload: bytes, *, retain: bool, event_id: str) -> int:
        """Queue one message durably (committed before this returns); returns its sequence number."""
        size = len(payload)
        if size > self.max_bytes:
            raise SpoolError(
                f"event {event_id} of {size} bytes is larger than the whole spool "
                f"({self.max_bytes} bytes); raise mqtt.spool.max_mb"
            )
        with self._lock:
            self._check_open()
            now = self._clock()
            with self._tx() as db:
                lost = 0
                if now - self._expiry_checked_at >= HOUSEKEEPING_S or now < self._expiry_checked_at:
                    lost = self._expire(db, now)
                    self._expiry_checked_at = now
                lost += self._make_room(db, size)
                cur = db.execute(
                    "INSERT INTO queue(topic, payload, retain, event_id, created, state) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, payload, int(retain), event_id, now, PENDING),
                )
                if retain:
                    db.execute(
                        "INSERT OR REPLACE INTO retained(topic, payload, event_id, created) "
                        "VALUES (?, ?, ?, ?)",
                        (topic, payload, event_id, now),
                    )
                save = now - self._meta_saved_at >= HOUSEKEEPING_S or now < self._meta_saved_at
                if save:
                    self._save_put_meta(db, now, self._unsaved_puts + 1)
            # only now that the put is committed
            self._unsaved_puts = 0 if save else self._unsaved_puts + 1
            if save:
                self._meta_saved_at = now
            self._counters["enqueued"] = self._counters.get("enqueued", 0) + 1
            self._bytes += size
            self._pending_rows += 1
            seq = cur.lastrowid
        if lost:
            self._log_loss(lost)
        assert seq is not None
        return int(seq)

    @staticmethod
    def _save_put_meta(db: sqlite3.Connection, now: float, puts: int) -> None:
        """The heartbeat and the enqueued total, written at most every HOUSEKEEPING_S: two upserts per
        event would cost more than the event itself when the sync mode is ``normal``."""
        if puts:
            db.execute(
                "INSERT INTO meta(key, value) VALUES ('enqueued', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                (puts,),
            )
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_put', ?)", (now,))

    def _log_loss(self, n: int) -> None:
        """Warn when dropping starts, then at most once a minute: a full spool drops on every put."""
        self._unlogged_loss += n
        now = time.monotonic()
        if now - self._loss_logged_at >= LOSS_LOG_EVERY_S:
            log.warning(
                "spool %s: size or age bound reached, %d oldest event(s) dropped since the last warning "
                "(counted in health spool_dropped; raise mqtt.spool.max_mb / max_age_s to keep more)",
                self.path,
                self._unlogged_loss,
            )
            self._unlogged_loss = 0
            self._loss_logged_at = now

    def pending(self, after_seq: int = 0, limit: int = 100) -> list[SpooledMessage]:
        """The oldest unsent messages after ``after_seq``, in queue order."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload, retain, event_id, created FROM queue "
                "WHERE seq > ? AND state = ? ORDER BY seq LIMIT ?",
                (after_seq, PENDING, limit),
            ).fetchall()
        return [SpooledMessage(r[0], r[1], bytes(r[2]), bool(r[3]), r[4], r[5]) for r in rows]

    def ack(self, seqs: Iterable[int]) -> int:
        """The broker has them (PUBACK): delete. Returns how many were still queued."""
        ids = list(seqs)
        if not ids:
            return 0
        with self._lock:
            self._check_open()
            with self._tx() as db:
                marks = ",".join("?" * len(ids))
                size = db.execute(
                    f"SELECT COALESCE(SUM(length(payload)), 0), COUNT(*) FROM queue "
                    f"WHERE seq IN ({marks}) AND state = {PENDING}",
                    ids,
                ).fetchone()
                db.execute(f"DELETE FROM queue WHERE seq IN ({marks}) AND state = {PENDING}", ids)
                n = int(size[1])
                self._add(db, "acked", n)
            self._bytes -= int(size[0])
            self._pending_rows -= n
            if self._pending_rows == 0:
                self._reclaim()
        return n

    def reject(self, seqs: Iterable[int]) -> int:
        """The broker refused them: keep for inspection, never re-send, count."""
        ids = list(seqs)
        if not ids:
            return 0
        with self._lock:
            self._check_open()
            with self._tx() as db:
                marks = ",".join("?" * len(ids))
                cur = db.execute(
                    f"UPDATE queue SET state = {REJECTED} WHERE seq IN ({marks}) AND state = {PENDING}", ids
                )
                n = max(cur.rowcount, 0)
                self._add(db, "rejected", n)
            self._pending_rows -= n
        return n

    def expire(self) -> int:
        """Apply the age bound now (also done on every put); returns how many pending events went."""
        with self._lock:
            self._check_open()
            with self._tx() as db:
                return self._expire(db, self._clock())

    def _reclaim(self) -> None:
        """Give disk back after an outage drained: the file would otherwise stay at its peak size.

        VACUUM rather than auto_vacuum=INCREMENTAL: the incremental pragma frees one page per
        statement step through Python's sqlite3, and with the queue empty VACUUM copies only the
        retained snapshots and counters.
        """
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        if free > RECLAIM_PAGES:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def has_pending(self, topic: str) -> bool:
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT 1 FROM queue WHERE topic = ? AND state = ? LIMIT 1", (topic, PENDING)
            ).fetchone()
        return row is not None

    def retained(self) -> list[RetainedState]:
        """The last payload queued on each retained topic (delivered or not)."""
        with self._lock:
            self._check_open()
            rows = self._db.execute("SELECT topic, payload, event_id FROM retained ORDER BY topic").fetchall()
        return [RetainedState(r[0], bytes(r[1]), r[2]) for r in rows]

    @property
    def queued(self) -> int:
        return self._pending_rows

    def snapshot(self) -> SpoolStats:
        """Like :meth:`stats` from the in-memory mirrors plus one indexed read: cheap enough for
        every health message, where ``stats`` scans the queue."""
        with self._lock:
            self._check_open()
            head = self._db.execute(
                "SELECT created FROM queue WHERE state = ? ORDER BY seq LIMIT 1", (PENDING,)
            ).fetchone()
            c = self._counters
            return SpoolStats(
                queued=self._pending_rows,
                queued_bytes=self._bytes,
                oldest_created=None if head is None else float(head[0]),
                rejected_held=None,
                dropped=c.get("dropped", 0),
                expired=c.get("expired", 0),
                rejected=c.get("rejected", 0),
                acked=c.get("acked", 0),
                enqueued=c.get("enqueued", 0),
                boot=self.boot,
                last_put=None,
            )

    def stats(self) -> SpoolStats:
        with self._lock:
            self._check_open()
            return _read_stats(self._db)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                if self._unsaved_puts:
                    with self._tx() as db:
                        self._save_put_meta(db, self._clock(), self._unsaved_puts)
                    self._unsaved_puts = 0
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._release_lock()


def _read_stats(db: sqlite3.Connection) -> SpoolStats:
    q = db.execute(
        "SELECT COALESCE(SUM(state = ?), 0), COALESCE(SUM(length(payload)), 0), "
        "MIN(CASE WHEN state = ? THEN created END), COALESCE(SUM(state = ?), 0) FROM queue",
        (PENDING, PENDING, REJECTED),
    ).fetchone()
    held = q[3]
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    return SpoolStats(
        queued=int(q[0]),
        queued_bytes=int(q[1]),
        oldest_created=None if q[2] is None else float(q[2]),
        rejected_held=int(held),
        dropped=int(meta.get("dropped", 0)),
        expired=int(meta.get("expired", 0)),
        rejected=int(meta.get("rejected", 0)),
        acked=int(meta.get("acked", 0)),
        enqueued=int(meta.get("enqueued", 0)),
        boot=int(meta.get("boot", 0)),
        last_put=None if meta.get("last_put") is None else float(meta["last_put"]),
    )


def read_stats(path: Path) -> SpoolStats:
    """Stats of a spool another process may be writing (read-only; takes no lock, creates nothing)."""
    if not path.is_file():
        raise SpoolError(f"no spool at {path} (has the worker run with this mqtt.spool.dir?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read spool {path}: {exc}") from None
    try:
        return _read_stats(db)
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            raise SpoolError(f"spool {path} is not set up yet (is its worker just starting?)") from None
        raise SpoolError(f"cannot read spool {path}: {exc} (run the check as the worker's user)") from None
    except sqlite3.Error as exc:
        raise SpoolError(f"cannot read spool {path}: {exc} (run the check as the worker's user)") from None
    finally:
        db.close()
