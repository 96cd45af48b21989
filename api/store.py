"""Current state, history and camera status behind the API, in SQLite or PostgreSQL.

Only portable SQL is used — plain range queries for the spatial prefilter, integer epoch buckets
for history, ``INSERT .. ON CONFLICT`` (which both dialects have) for roll-ups — so that the same
models serve both. The schema is owned by the Alembic migrations in ``migrations/``; the models
here must match them (a test compares the two).

Ingest is idempotent: every occupancy/status/health event id is remembered in ``seen_events``
inside the same transaction that applies the event, so a retained message re-delivered on every
reconnect, or a QoS 1 re-send, changes nothing the second time. Traffic bins are idempotent by
their key (camera, line, bin): a re-sent bin replaces the stored one and the roll-ups move by the
difference, so nothing is ever counted twice.

History is kept at three resolutions, written together at ingest: 1 minute, 15 minutes and
1 hour, each with its own retention, so that a year of history stays small and late data (an
edge that buffered during an outage) lands in every resolution without a re-aggregation pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Double,
    Engine,
    Index,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from cityeye.api.geo import bounding_box, haversine_m
from cityeye.events.schema import (
    CameraStatus,
    HealthEvent,
    OccupancyEvent,
    OverstayEvent,
    SnapshotEvent,
    SpaceState,
    StatusEvent,
    TrafficEvent,
)

log = logging.getLogger(__name__)

Event = OccupancyEvent | StatusEvent | HealthEvent | TrafficEvent | OverstayEvent | SnapshotEvent
"""Every event kind the store understands."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long an SQLite writer waits for another writer's lock before failing."""

_WRITE = "cityeye_write"
"""Execution option that marks a connection whose transaction will write (SQLite: BEGIN IMMEDIATE)."""

RESOLUTIONS_S = (60, 900, 3600)
"""History resolutions, finest first: 1 minute, 15 minutes, 1 hour."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def epoch(t: datetime) -> int:
    return int(t.timestamp())


def from_epoch(s: int) -> datetime:
    return datetime.fromtimestamp(s, UTC)


def zone_uid(site: str, camera: str, zone_id: str) -> str:
    """Zone ids are only unique per camera; the API id needs site and camera too."""
    return f"{site}:{camera}:{zone_id}"


line_uid = zone_uid
"""Counting lines are zones of a traffic camera: the same id scheme."""


class ApplyResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TOO_OLD = "too_old"  # a traffic bin older than the finest history we keep: nothing to replace


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps.

    SQLite has no time zone type and returns naive values; storing naive UTC and re-attaching
    UTC on the way out keeps comparisons in Python and ordering in SQL both correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; pass an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ZoneRow(Base):
    """Current state of one parking zone: the newest snapshot that mentioned it."""

    __tablename__ = "zones"

    uid: Mapped[str] = mapped_column(String(400), primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    zone_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None]
    lot: Mapped[str | None]
    lon: Mapped[float | None] = mapped_column(Double)
    lat: Mapped[float | None] = mapped_column(Double)
    free: Mapped[int]
    total: Mapped[int]
    occupied: Mapped[bool | None] = mapped_column(doc="Spaces only; areas count vehicles instead.")
    score: Mapped[float | None] = mapped_column(Double)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    event_id: Mapped[str] = mapped_column(String(200))
    vehicle: Mapped[str | None] = mapped_column(String(32), doc="Vehicle type the zone is for; None: any.")
    active: Mapped[bool] = mapped_column(
        default=True, doc="False once a newer snapshot of the camera no longer lists the zone."
    )
    rev: Mapped[int] = mapped_column(BigInteger, default=0, index=True)

    __table_args__ = (
        # The nearby prefilter is a range on lat then lon; free rides along to skip full zones.
        Index(None, "lat", "lon", "free"),
        Index(None, "site", "camera"),
    )


class ZoneStatRow(Base):
    """Occupancy statistics of one zone in one time bucket of one resolution."""

    __tablename__ = "zone_stats"

    uid: Mapped[str] = mapped_column(String(400), primary_key=True)
    res_s: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, doc="Bucket start, UTC epoch seconds.")
    samples: Mapped[int]
    free_sum: Mapped[int] = mapped_column(BigInteger)
    free_min: Mapped[int]
    free_max: Mapped[int]
    total_max: Mapped[int]

    __table_args__ = (Index(None, "res_s", "bucket"),)


class TrafficCountRow(Base):
    """Crossings of one line in one bucket, per direction and vehicle class."""

    __tablename__ = "traffic_counts"

    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera: Mapped[str] = mapped_column(String(128), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    res_s: Mapped[int] = mapped_column(primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True, doc="Bucket start, UTC epoch seconds.")
    direction: Mapped[str] = mapped_column(String(64), primary_key=True)
    vclass: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "res_s", "bucket"),)


class TrafficLineRow(Base):
    """Where a counting line is (WGS84 vertices), from the newest traffic event that carried it."""

    __tablename__ = "traffic_lines"

    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera: Mapped[str] = mapped_column(String(128), primary_key=True)
    line_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    location: Mapped[list[list[float]]] = mapped_column(JSON, doc="[[lon, lat], ...]")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CameraRow(Base):
    __tablename__ = "cameras"

    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None]
    status_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    health_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_heard_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, doc="Arrival time of the newest event from the camera (our clock, for silence)."
    )
    rev: Mapped[int] = mapped_column(BigInteger, default=0, index=True)
    snapshot_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, doc="Frame time of the newest snapshot in camera_snapshots (None: never sent one)."
    )


class CameraSnapshotRow(Base):
    """The newest snapshot JPEG of each camera (one row per camera, replaced by newer frames)."""

    __tablename__ = "camera_snapshots"

    site: Mapped[str] = mapped_column(String(128), primary_key=True)
    camera: Mapped[str] = mapped_column(String(128), primary_key=True)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    width: Mapped[int]
    height: Mapped[int]
    jpeg: Mapped[bytes] = mapped_column(LargeBinary)


class SeenEventRow(Base):
    __tablename__ = "seen_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class ApiKeyRow(Base):
    """An admin-managed API key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), doc="First characters of the key, to recognise it.")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OverstayRow(Base):
    """A space occupied past its dwell limit (one event per stay, from the edge)."""

    __tablename__ = "overstays"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    site: Mapped[str] = mapped_column(String(128))
    camera: Mapped[str] = mapped_column(String(128))
    zone_id: Mapped[str] = mapped_column(String(128))
    lot: Mapped[str | None]
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    dwell_s: Mapped[float] = mapped_column(Double)
    limit_s: Mapped[float] = mapped_column(Double)
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class MetaRow(Base):
    """Small counters; ``rev`` orders every change of zones and cameras for incremental readers."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A zone's current state, detached from any session so it can cross threads."""

    uid: str
    site: str
    camera: str
    zone_id: str
    kind: str
    name: str | None
    lot: str | None
    lon: float | None
    lat: float | None
    free: int
    total: int
    occupied: bool | None
    score: float | None
    observed_at: datetime
    updated_at: datetime
    event_id: str
    vehicle: str | None
    camera_status: str | None

    @property
    def last_update(self) -> datetime:
        """The older of frame time and arrival time.

        Frame time catches a snapshot that arrives late (edge buffered it during an outage);
        arrival time guards against an edge clock that runs ahead of ours.
        """
        return min(self.observed_at, self.updated_at)

    def is_stale(self, now: datetime, stale_after_s: float) -> bool:
        """A driver should not trust a count that is old or from a camera the broker declared gone."""
        if self.camera_status == CameraStatus.OFFLINE:
            return True
        return now - self.last_update > timedelta(seconds=stale_after_s)


@dataclass(frozen=True, slots=True)
class NearbyZone:
    zone: ZoneRecord
    distance_m: float


@dataclass(frozen=True, slots=True)
class CameraRecord:
    site: str
    camera: str
    status: str | None
    detail: str | None
    status_at: datetime | None
    last_seen_at: datetime | None
    health: dict[str, Any] | None
    health_at: datetime | None
    last_heard_at: datetime | None
    snapshot_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CameraSnapshot:
    observed_at: datetime
    width: int
    height: int
    jpeg: bytes


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """Zone occupancy over one bucket: free places on average, at least and at most."""

    start: datetime
    samples: int
    free_avg: float
    free_min: int
    free_max: int
    total: int


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    line: str
    start: datetime
    direction: str | None
    vclass: str | None
    count: int


@dataclass(frozen=True, slots=True)
class OverstayRecord:
    event_id: str
    site: str
    camera: str
    zone_id: str
    lot: str | None
    since: datetime
    dwell_s: float
    limit_s: float
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: int
    name: str
    role: str
    key_hash: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed since a revision: for readers that keep their own copy (the zone index)."""

    rev: int
    zones: list[ZoneRecord]
    inactive: list[str]
    cameras: list[CameraRecord]


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


@dataclass
class _Batch:
    """Rows of one ``apply_many`` call, merged before they are written."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    listed: list[tuple[str, str, datetime, list[str]]] = field(default_factory=list)
    cameras: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def touch(self, site: str, camera: str, at: datetime) -> None:
        cur = self.cameras.get((site, camera))
        if cur is None or at > cur:
            self.cameras[(site, camera)] = at


_ZONE_COLUMNS = (
    ZoneRow.uid,
    ZoneRow.site,
    ZoneRow.camera,
    ZoneRow.zone_id,
    ZoneRow.kind,
    ZoneRow.name,
    ZoneRow.lot,
    ZoneRow.lon,
    ZoneRow.lat,
    ZoneRow.free,
    ZoneRow.total,
    ZoneRow.occupied,
    ZoneRow.score,
    ZoneRow.observed_at,
    ZoneRow.updated_at,
    ZoneRow.event_id,
    ZoneRow.vehicle,
    CameraRow.status,
)
_CAMERA_JOIN = and_(CameraRow.site == ZoneRow.site, CameraRow.camera == ZoneRow.camera)


def _is_memory_sqlite(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def _camera_record(r: CameraRow) -> CameraRecord:
    return CameraRecord(
        site=r.site,
        camera=r.camera,
        status=r.status,
        detail=r.detail,
        status_at=r.status_at,
        last_seen_at=r.last_seen_at,
        health=r.health,
        health_at=r.health_at,
        last_heard_at=r.last_heard_at,
        snapshot_at=r.snapshot_at,
    )


class Store:
    """All database access of the API; thread-safe (one short session per call).

    The MQTT consumer thread writes while request threads read; every public method opens
    and closes its own session and returns plain dataclasses, never live ORM objects.
    In-memory SQLite (``sqlite://``) shares one connection between all threads, so it suits
    single-threaded scripts and quick checks only; the API wants a file or a server database.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError(
                f"database URL {url!r} is not an SQLAlchemy URL; use e.g. sqlite:///cityeye.db "
                "or postgresql+psycopg://user@host/cityeye (api.database_url in the site config)"
            ) from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"database URL {url!r}: {self.dialect} is not supported; use sqlite:///FILE or "
                "postgresql+psycopg://user@host/db (the database driver must be installed)"
            )
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            # The consumer thread and request threads share the pool.
            kwargs["connect_args"] = {"check_same_thread": False}
            if _is_memory_sqlite(url):
                # Each new connection would otherwise get its own, empty, in-memory database.
                kwargs["poolclass"] = StaticPool
            elif parsed.database:
                parent = Path(parsed.database).expanduser().resolve().parent
                if not parent.is_dir():
                    raise ValueError(
                        f"database URL {url!r}: folder {parent} does not exist; create it "
                        "or point api.database_url at an existing folder"
                    )
        else:
            kwargs["pool_pre_ping"] = True  # a restarted server must not cost one failed request
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise ValueError(
                f"cannot use database URL {url!r}: {exc} (is the database driver installed? "
                "PostgreSQL needs postgresql+psycopg://, with psycopg installed)"
            ) from None
        if self.dialect == "sqlite":
            self._setup_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        self.minute_retention = timedelta(days=2)

    @staticmethod
    def _setup_sqlite(engine: Engine) -> None:
        """WAL so readers never block the ingest writer, and explicit BEGINs.

        Python 3.11's sqlite3 emits BEGIN lazily (only before DML), which breaks read
        consistency and lets two writers deadlock on the read-to-write lock upgrade, where
        SQLite returns "database is locked" at once instead of honouring busy_timeout. Taking
        over BEGIN — IMMEDIATE for writing transactions — makes the busy timeout effective.
        """

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA journal_mode = WAL")
                cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; commits need no fsync
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

    # -- lifecycle -------------------------------------------------------------------------

    def migrate(self) -> str:
        """Bring the schema to the newest Alembic revision; returns that revision."""
        from cityeye.api.migrate import upgrade

        # The writing engine: on SQLite its BEGIN IMMEDIATE makes replicas starting together take turns.
        return upgrade(self._write_engine)

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> bool:
        """True when the database answers a trivial query (for /healthz)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not answering"
            log.warning("database %s does not answer: %s", self.engine.url.render_as_string(), exc)
            return False
        return True

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._writer() as session, session.begin():
            yield session

    def _insert(self, table: Any) -> Any:
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    def _least(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.min(a, b) if self.dialect == "sqlite" else func.least(a, b)

    def _greatest(self, a: Any, b: Any) -> ColumnElement[Any]:
        return func.max(a, b) if self.dialect == "sqlite" else func.greatest(a, b)

    @staticmethod
    def _next_rev(s: Session) -> int:
        """One number per writing transaction, in commit order.

        The row lock on ``meta.rev`` (PostgreSQL) or the database write lock (SQLite) is held
        to commit, so a reader that sees revision n committed has seen every revision below n.
        """
        rev = s.execute(
            update(MetaRow)
            .where(MetaRow.key == "rev")
            .values(value=MetaRow.value + 1)
            .returning(MetaRow.value)
        ).scalar_one_or_none()
        if rev is None:
            s.add(MetaRow(key="rev", value=1))
            s.flush()
            return 1
        return int(rev)

    # -- ingest ----------------------------------------------------------------------------

    def apply(self, event: Event, *, received_at: datetime | None = None) -> ApplyResult:
        """Apply one event; DUPLICATE (and nothing changed) when it was applied before.

        An occupancy snapshot older than the stored state of a zone leaves that zone's current
        state alone (an out-of-order replay must not turn back the clock) but still lands in
        the history, which is ordered by observation time anyway — unless it is older than the
        deduplication window, whose event ids we no longer remember.
        """
        return self.apply_many([event], received_at=received_at)[0]

    def apply_many(
        self, events: Sequence[Event], *, received_at: datetime | None = None
    ) -> list[ApplyResult]:
        """Apply events in order, in one transaction (the consumer's batches): all or nothing.

        Every writer first takes the ``meta.rev`` row (PostgreSQL) or the database write lock
        (SQLite), so no other replica commits while this batch runs: checking which event ids
        are new and then inserting them cannot race. Zone, statistics and camera rows of the
        whole batch are merged in Python and written with one statement each.
        """
        now = received_at or utcnow()
        out: list[ApplyResult] = []
        batch = _Batch()
        with self._write() as s:
            rev = self._next_rev(s)
            ids = [e.event_id for e in events if not isinstance(e, TrafficEvent)]
            known: set[str] = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                known.update(s.scalars(select(SeenEventRow.event_id).where(SeenEventRow.event_id.in_(chunk))))
            for event in events:
                if isinstance(event, TrafficEvent):
                    out.append(self._apply_traffic(s, event, now, rev, batch))
                    continue
                if isinstance(event, SnapshotEvent):  # latest wins: no event id to remember
                    out.append(self._apply_snapshot(s, event, now, rev))
                    continue
                if event.event_id in known:
                    out.append(ApplyResult.DUPLICATE)
                    continue
                known.add(event.event_id)
                batch.seen.append({"event_id": event.event_id, "received_at": now})
                if isinstance(event, OccupancyEvent):
                    self._apply_occupancy(event, now, rev, batch)
                elif isinstance(event, StatusEvent):
                    self._apply_status(s, event, now, rev)
                elif isinstance(event, OverstayEvent):
                    s.add(
                        OverstayRow(
                            event_id=event.event_id,
                            site=event.site,
                            camera=event.camera,
                            zone_id=event.zone_id,
                            lot=event.lot,
                            since=event.since,
                            dwell_s=event.dwell_s,
                            limit_s=event.limit_s,
                            observed_at=event.observed_at,
                            received_at=now,
                        )
                    )
                    batch.touch(event.site, event.camera, event.observed_at)
                else:
                    self._apply_health(s, event, now, rev)
                out.append(ApplyResult.APPLIED)
            self._write_batch(s, batch, now, rev)
        return out

    def _write_batch(self, s: Session, b: _Batch, now: datetime, rev: int) -> None:
        s.flush()  # ORM work of the batch (status, health, overstays) first
        conn = s.connection()
        if b.seen:
            conn.execute(_table(SeenEventRow).insert(), b.seen)
        if b.stats:
            conn.execute(self._stats_upsert, list(b.stats.values()))
        if b.zones:
            conn.execute(self._zone_upsert, list(b.zones.values()))
        zones = _table(ZoneRow)
        for site, camera, at, uids in b.listed:
            # A snapshot lists every zone of the camera: a zone it no longer lists (and that no
            # newer snapshot mentioned) was removed from the camera's zones file; stop offering it.
            conn.execute(
                update(zones)
                .where(
                    zones.c.site == site,
                    zones.c.camera == camera,
                    zones.c.active.is_(True),
                    zones.c.observed_at < at,
                    zones.c.uid.not_in(uids),
                )
                .values(active=False, rev=rev)
            )
        for (site, camera), at in b.cameras.items():
            self._touch_camera(s, site, camera, at, now, rev)

    def _camera(self, s: Session, site: str, camera: str, now: datetime, rev: int) -> CameraRow:
        row = s.get(CameraRow, (site, camera))
        if row is None:
            row = CameraRow(site=site, camera=camera)
            s.add(row)
        row.rev = rev
        return row

    @staticmethod
    def _seen(row: CameraRow, at: datetime, now: datetime) -> None:
        if row.last_seen_at is None or at > row.last_seen_at:
            row.last_seen_at = at
        if row.last_heard_at is None or now > row.last_heard_at:
            row.last_heard_at = now

    def _touch_camera(
        self, s: Session, site: str, camera: str, at: datetime, now: datetime, rev: int
    ) -> None:
        """Camera last seen/heard, as one upsert (the hot path: no ORM load)."""
        s.flush()  # ORM changes of this camera (status, health) first
        s.connection().execute(
            self._camera_upsert,
            {"site": site, "camera": camera, "last_seen_at": at, "last_heard_at": now, "rev": rev},
        )
        # The ORM may hold this camera from an earlier event of the batch: make it re-read.
        row = s.identity_map.get(s.identity_key(CameraRow, (site, camera)))
        if row is not None:
            s.expire(row)

    def _apply_occupancy(self, ev: OccupancyEvent, now: datetime, rev: int, b: _Batch) -> None:
        b.touch(ev.site, ev.camera, ev.observed_at)
        if not ev.zones:
            return
        history = ev.observed_at >= now - self.minute_retention
        t = epoch(ev.observed_at)
        uids = []
        for z in ev.zones:
            uid = zone_uid(ev.site, ev.camera, z.id)
            uids.append(uid)
            row = {
                "uid": uid,
                "site": ev.site,
                "camera": ev.camera,
                "zone_id": z.id,
                "kind": z.kind,
                "name": z.name,
                "lot": z.lot,
                "lon": z.lon,
                "lat": z.lat,
                "free": z.free,
                "total": z.total,
                "occupied": z.occupied if isinstance(z, SpaceState) else None,
                "score": z.score if isinstance(z, SpaceState) else None,
                "vehicle": z.vehicle,
                "observed_at": ev.observed_at,
                "updated_at": now,
                "event_id": ev.event_id,
                "active": True,
                "rev": rev,
            }
            prev = b.zones.get(uid)
            # Within a batch the newest snapshot of a zone wins, as the upsert's WHERE does across them.
            if prev is None or prev["observed_at"] <= ev.observed_at:
                b.zones[uid] = row
            if history:
                for res in RESOLUTIONS_S:
                    key = (uid, res, t - t % res)
                    st = b.stats.get(key)
                    if st is None:
                        b.stats[key] = {
                            "uid": uid,
                            "res_s": res,
                            "bucket": key[2],
                            "samples": 1,
                            "free_sum": z.free,
                            "free_min": z.free,
                            "free_max": z.free,
                            "total_max": z.total,
                        }
                    else:
                        st["samples"] += 1
                        st["free_sum"] += z.free
                        st["free_min"] = min(st["free_min"], z.free)
                        st["free_max"] = max(st["free_max"], z.free)
                        st["total_max"] = max(st["total_max"], z.total)
        b.listed.append((ev.site, ev.camera, ev.observed_at, uids))

    @cached_property
    def _stats_upsert(self) -> Any:
        """Built once: constructing an ON CONFLICT statement costs more than executing it."""
        ins = self._insert(ZoneStatRow.__table__)
        ex = ins.excluded
        tbl = ZoneStatRow.__table__.c
        return ins.on_conflict_do_update(
            index_elements=["uid", "res_s", "bucket"],
            set_={
                "samples": tbl.samples + ex.samples,
                "free_sum": tbl.free_sum + ex.free_sum,
                "free_min": self._least(tbl.free_min, ex.free_min),
                "free_max": self._greatest(tbl.free_max, ex.free_max),
                "total_max": self._greatest(tbl.total_max, ex.total_max),
            },
        )

    @cached_property
    def _camera_upsert(self) -> Any:
        tbl = CameraRow.__table__.c
        ins = self._insert(CameraRow.__table__)
        ex = ins.excluded

        def newer(col: Any, new: Any) -> Any:
            return case((or_(col.is_(None), col < new), new), else_=col)

        return ins.on_conflict_do_update(
            index_elements=["site", "camera"],
            set_={
                "last_seen_at": newer(tbl.last_seen_at, ex.last_seen_at),
                "last_heard_at": newer(tbl.last_heard_at, ex.last_heard_at),
                "rev": ex.rev,
            },
        )

    @cached_property
    def _zone_upsert(self) -> Any:
        ins = self._insert(ZoneRow.__table__)
        ex = ins.excluded
        keep = ("uid", "site", "camera", "zone_id")
        # An out-of-order (older) snapshot must not turn back a zone's clock: the WHERE skips it.
        return ins.on_conflict_do_update(
            index_elements=["uid"],
            set_={c.name: ex[c.name] for c in ZoneRow.__table__.c if c.name not in keep},
            where=ZoneRow.__table__.c.observed_at <= ex.observed_at,
        )

    def _apply_status(self, s: Session, ev: StatusEvent, now: datetime, rev: int) -> None:
        """Statuses apply in arrival order, not by timestamp.

        The Last Will is composed when the edge connects, so the broker's ``offline`` carries
        a timestamp older than the ``online`` it must override. One publisher per camera and
        QoS 1 keep arrival order meaningful; an old retained copy is caught by its event id.
        """
        cam = self._camera(s, ev.site, ev.camera, now, rev)
        cam.status = ev.status.value
        cam.detail = ev.detail
        cam.status_at = ev.observed_at
        if ev.status != CameraStatus.OFFLINE:  # the will speaks for a camera that is gone
            self._seen(cam, ev.observed_at, now)

    def _apply_snapshot(self, s: Session, ev: SnapshotEvent, now: datetime, rev: int) -> ApplyResult:
        """Keep the newest frame per camera; an older or repeated one (a replayed retained copy)
        changes nothing."""
        row = s.get(CameraSnapshotRow, (ev.site, ev.camera))
        if row is not None and ev.observed_at <= row.observed_at:
            return ApplyResult.DUPLICATE
        if row is None:
            row = CameraSnapshotRow(site=ev.site, camera=ev.camera)
            s.add(row)
        row.observed_at, row.width, row.height, row.jpeg = ev.observed_at, ev.width, ev.height, ev.jpeg_bytes
        cam = self._camera(s, ev.site, ev.camera, now, rev)
        cam.snapshot_at = ev.observed_at
        self._seen(cam, ev.observed_at, now)
        return ApplyResult.APPLIED

    def camera_snapshot(self, site: str, camera: str) -> CameraSnapshot | None:
        """The newest snapshot of a camera, or None if it never sent one."""
        with self._read() as s:
            row = s.get(CameraSnapshotRow, (site, camera))
            if row is None:
                return None
            return CameraSnapshot(row.observed_at, row.width, row.height, bytes(row.jpeg))

    def _apply_health(self, s: Session, ev: HealthEvent, now: datetime, rev: int) -> None:
        cam = self._camera(s, ev.site, ev.camera, now, rev)
        if cam.health_at is None or ev.observed_at >= cam.health_at:
            cam.health = ev.health.model_dump(mode="json")
            cam.health_at = ev.observed_at
        self._seen(cam, ev.observed_at, now)

    def _apply_traffic(self, s: Session, ev: TrafficEvent, now: datetime, rev: int, b: _Batch) -> ApplyResult:
        """Replace the bin's counts; move the 15-minute and hourly roll-ups by the difference."""
        start = epoch(ev.bin_start)
        if ev.bin_start < now - self.minute_retention:
            return ApplyResult.TOO_OLD
        bucket = start - start % RESOLUTIONS_S[0]
        changed = False
        for line in ev.lines:
            key = (ev.site, ev.camera, line.line_id)
            if line.location is not None:
                self._place_line(s, key, [list(v) for v in line.location], ev.observed_at)
            new: dict[tuple[str, str], int] = {
                (d, str(c)): int(n) for d, per in line.counts.items() for c, n in per.items()
            }
            old = {
                (r[0], r[1]): int(r[2])  # not r.count: a Row is a tuple and has a count() method
                for r in s.execute(
                    select(TrafficCountRow.direction, TrafficCountRow.vclass, TrafficCountRow.count).where(
                        TrafficCountRow.site == key[0],
                        TrafficCountRow.camera == key[1],
                        TrafficCountRow.line_id == key[2],
                        TrafficCountRow.res_s == RESOLUTIONS_S[0],
                        TrafficCountRow.bucket == bucket,
                    )
                )
            }
            keys = set(new) | set(old)
            delta = {k: new.get(k, 0) - old.get(k, 0) for k in keys}
            if old and not any(delta.values()) and set(new) == set(old):
                continue
            changed = True
            tbl = TrafficCountRow.__table__.c
            for res in RESOLUTIONS_S:
                ins = self._insert(TrafficCountRow.__table__)
                value = ins.excluded.count if res == RESOLUTIONS_S[0] else tbl.count + ins.excluded.count
                stmt = ins.on_conflict_do_update(
                    index_elements=[
                        "site",
                        "camera",
                        "line_id",
                        "res_s",
                        "bucket",
                        "direction",
                        "vclass",
                    ],
                    set_={"count": value},
                )
                rows = [
                    {
                        "site": key[0],
                        "camera": key[1],
                        "line_id": key[2],
                        "res_s": res,
                        "bucket": start - start % res,
                        "direction": d,
                        "vclass": c,
                        "count": new.get((d, c), 0) if res == RESOLUTIONS_S[0] else delta[(d, c)],
                    }
                    for d, c in sorted(keys)
                ]
                s.execute(stmt, rows)
        if changed:
            b.touch(ev.site, ev.camera, ev.observed_at)
        return ApplyResult.APPLIED if changed else ApplyResult.DUPLICATE

    # -- maintenance -----------------------------------------------------------------------

    def expire(
        self, *, minute_days: float, quarter_days: float, hour_days: float, now: datetime | None = None
    ) -> dict[str, int]:
        """Delete history past its retention, old event ids and long-inactive zones; counts per table."""
        now = now or utcnow()
        keep = {60: minute_days, 900: quarter_days, 3600: hour_days}
        deleted = {"zone_stats": 0, "traffic_counts": 0, "seen_events": 0, "zones": 0, "overstays": 0}
        with self._write() as s:
            for res, days in keep.items():
                cutoff = epoch(now - timedelta(days=days))
                for name, table in (("zone_stats", ZoneStatRow), ("traffic_counts", TrafficCountRow)):
                    r = s.execute(delete(table).where(table.res_s == res, table.bucket < cutoff))
                    deleted[name] += int(r.rowcount or 0)  # type: ignore[attr-defined]
            r = s.execute(
                delete(SeenEventRow).where(SeenEventRow.received_at < now - timedelta(days=minute_days))
            )
            deleted["seen_events"] = int(r.rowcount or 0)  # type: ignore[attr-defined]
            r = s.execute(
                delete(ZoneRow).where(
                    ZoneRow.active.is_(False), ZoneRow.updated_at < now - timedelta(days=minute_days)
                )
            )
            deleted["zones"] = int(r.rowcount or 0)  # type: ignore[attr-defined]
            r = s.execute(
                delete(OverstayRow).where(OverstayRow.observed_at < now - timedelta(days=quarter_days))
            )
            deleted["overstays"] = int(r.rowcount or 0)  # type: ignore[attr-defined]
        return deleted

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def _record(row: Sequence[Any]) -> ZoneRecord:
        return ZoneRecord(*row)

    def zone(self, uid: str) -> ZoneRecord | None:
        with self._read() as s:
            row = s.execute(
                select(*_ZONE_COLUMNS)
                .outerjoin(CameraRow, _CAMERA_JOIN)
                .where(ZoneRow.uid == uid, ZoneRow.active.is_(True))
            ).first()
        return None if row is None else self._record(row)

    def zones(self) -> list[ZoneRecord]:
        with self._read() as s:
            rows = s.execute(
                select(*_ZONE_COLUMNS)
                .outerjoin(CameraRow, _CAMERA_JOIN)
                .where(ZoneRow.active.is_(True))
                .order_by(ZoneRow.uid)
            ).all()
        return [self._record(r) for r in rows]

    def current_rev(self) -> int:
        with self._read() as s:
            v = s.scalar(select(MetaRow.value).where(MetaRow.key == "rev"))
        return int(v or 0)

    def changes_since(self, rev: int) -> Changes:
        """Zones and cameras changed after ``rev`` (all of them for rev 0), and the new revision."""
        with self._read() as s:
            now_rev = int(s.scalar(select(MetaRow.value).where(MetaRow.key == "rev")) or 0)
            if now_rev == rev:
                return Changes(rev, [], [], [])
            rows = s.execute(
                select(*_ZONE_COLUMNS, ZoneRow.active)
                .outerjoin(CameraRow, _CAMERA_JOIN)
                .where(ZoneRow.rev > rev, ZoneRow.rev <= now_rev)
            ).all()
            cams = s.scalars(select(CameraRow).where(CameraRow.rev > rev, CameraRow.rev <= now_rev)).all()
            cam_records = [_camera_record(c) for c in cams]
        zones = [self._record(r[:-1]) for r in rows if r[-1]]
        inactive = [r[0] for r in rows if not r[-1]]
        return Changes(now_rev, zones, inactive, cam_records)

    def nearby(
        self,
        lat: float,
        lon: float,
        radius_m: float,
        min_free: int = 1,
        limit: int = 20,
        *,
        kind: str | None = None,
        vehicle: str | None = None,
    ) -> list[NearbyZone]:
        """Zones with at least ``min_free`` free places within ``radius_m``, nearest first.

        The database path, kept as the reference the in-memory index is tested against and for
        scripts without an index: an indexed bounding-box query fetches ids and coordinates of
        candidates, numpy computes exact distances, only the ``limit`` winners are loaded.
        Zones for a ``vehicle`` type include zones for any vehicle (``vehicle`` unset).
        """
        if limit <= 0:
            return []
        box = bounding_box(lat, lon, radius_m)
        lon_filter = or_(*(ZoneRow.lon.between(lo, hi) for lo, hi in box.lon_ranges))
        conds: list[ColumnElement[bool]] = [
            ZoneRow.lat.between(box.min_lat, box.max_lat),
            lon_filter,
            ZoneRow.free >= min_free,
            ZoneRow.active.is_(True),
        ]
        if kind is not None:
            conds.append(ZoneRow.kind == kind)
        if vehicle is not None:
            conds.append(or_(ZoneRow.vehicle.is_(None), ZoneRow.vehicle == vehicle))
        with self._read() as s:
            cand = s.execute(select(ZoneRow.uid, ZoneRow.lat, ZoneRow.lon).where(*conds)).all()
            if not cand:
                return []
            uids = np.array([c[0] for c in cand], dtype=object)
            coords = np.array([(c[1], c[2]) for c in cand], dtype=np.float64)
            dist = haversine_m(lat, lon, coords[:, 0], coords[:, 1])
            inside = dist <= radius_m
            uids, dist = uids[inside], dist[inside]
            # Nearest first; equal distances (zones of one lot share a centroid) by id, stably.
            order = np.lexsort((uids.astype(str), dist))[:limit]
            chosen = {str(uids[i]): float(dist[i]) for i in order}
            if not chosen:
                return []
            rows = s.execute(
                select(*_ZONE_COLUMNS).outerjoin(CameraRow, _CAMERA_JOIN).where(ZoneRow.uid.in_(list(chosen)))
            ).all()
        by_uid = {r[0]: self._record(r) for r in rows}
        return [NearbyZone(by_uid[u], d) for u, d in chosen.items() if u in by_uid]

    def cameras(self) -> list[CameraRecord]:
        with self._read() as s:
            rows = s.scalars(select(CameraRow).order_by(CameraRow.site, CameraRow.camera)).all()
            return [_camera_record(r) for r in rows]

    def history(
        self,
        uid: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket_s: int = 60,
        limit: int = 10_000,
    ) -> list[HistoryPoint]:
        """Occupancy per bucket in [start, end), oldest first, from the coarsest resolution that fits.

        ``bucket_s`` must be a multiple of a kept resolution (60, 900, 3600); buckets larger
        than the resolution are summed from it.
        """
        res = max(r for r in RESOLUTIONS_S if bucket_s % r == 0)
        conds = [ZoneStatRow.uid == uid, ZoneStatRow.res_s == res]
        if start is not None:
            conds.append(ZoneStatRow.bucket >= epoch(start))
        if end is not None:
            conds.append(ZoneStatRow.bucket < epoch(end))
        b = (
            (ZoneStatRow.bucket / bucket_s).cast(BigInteger) * bucket_s
            if self.dialect == "sqlite"
            else (func.div(ZoneStatRow.bucket, bucket_s) * bucket_s)
        )
        b = b.label("b")
        with self._read() as s:
            rows = s.execute(
                select(
                    b,
                    func.sum(ZoneStatRow.samples),
                    func.sum(ZoneStatRow.free_sum),
                    func.min(ZoneStatRow.free_min),
                    func.max(ZoneStatRow.free_max),
                    func.max(ZoneStatRow.total_max),
                )
                .where(*conds)
                .group_by(b)
                .order_by(b)
                .limit(limit)
            ).all()
        return [
            HistoryPoint(from_epoch(int(r[0])), int(r[1]), round(int(r[2]) / int(r[1]), 3), r[3], r[4], r[5])
            for r in rows
        ]

    def traffic(
        self,
        *,
        line: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        bucket_s: int = 900,
        by: Iterable[str] = (),
        limit: int = 100_000,
        cameras: Iterable[tuple[str, str]] | None = None,
    ) -> list[TrafficPoint]:
        """Line crossings per bucket in [start, end), summed over the dimensions not in ``by``.

        ``line`` is ``<site>:<camera>:<line_id>``; None gives every line (of ``cameras``, when
        given). ``by`` picks from ``class`` and ``direction``.
        """
        by = set(by)
        res = max(r for r in RESOLUTIONS_S if bucket_s % r == 0)
        t = TrafficCountRow
        conds: list[ColumnElement[bool]] = [t.res_s == res]
        if line is not None:
            site, _, rest = line.partition(":")
            camera, _, line_id = rest.partition(":")
            conds += [t.site == site, t.camera == camera, t.line_id == line_id]
        if cameras is not None:
            pairs = list(cameras)
            if not pairs:
                return []
            conds.append(tuple_(t.site, t.camera).in_(pairs))
        if start is not None:
            conds.append(t.bucket >= epoch(start))
        if end is not None:
            conds.append(t.bucket < epoch(end))
        b = (
            (t.bucket / bucket_s).cast(BigInteger) * bucket_s
            if self.dialect == "sqlite"
            else (func.div(t.bucket, bucket_s) * bucket_s)
        )
        b = b.label("b")
        dims: list[Any] = [t.site, t.camera, t.line_id, b]
        if "direction" in by:
            dims.append(t.direction)
        if "class" in by:
            dims.append(t.vclass)
        with self._read() as s:
            rows = s.execute(
                select(*dims, func.sum(t.count)).where(*conds).group_by(*dims).order_by(*dims).limit(limit)
            ).all()
        out = []
        for r in rows:
            i = 4
            direction = vclass = None
            if "direction" in by:
                direction = r[i]
                i += 1
            if "class" in by:
                vclass = r[i]
                i += 1
            out.append(
                TrafficPoint(line_uid(r[0], r[1], r[2]), from_epoch(int(r[3])), direction, vclass, int(r[i]))
            )
        return out

    @staticmethod
    def _place_line(s: Session, key: tuple[str, str, str], location: list[list[float]], at: datetime) -> None:
        row = s.get(TrafficLineRow, key)
        if row is None:
            s.add(
                TrafficLineRow(site=key[0], camera=key[1], line_id=key[2], location=location, updated_at=at)
            )
        elif at >= row.updated_at and row.location != location:  # a re-calibrated camera moves its lines
            row.location, row.updated_at = location, at

    def line_locations(self) -> dict[str, list[list[float]]]:
        """'<site>:<camera>:<line>' -> [[lon, lat], ...] of every line an edge has placed."""
        with self._read() as s:
            rows = s.execute(
                select(
                    TrafficLineRow.site,
                    TrafficLineRow.camera,
                    TrafficLineRow.line_id,
                    TrafficLineRow.location,
                )
            )
            return {line_uid(r[0], r[1], r[2]): r[3] for r in rows}

    def latest_traffic(self, res_s: int = 900) -> list[tuple[str, datetime, str, int]]:
        """Per line and direction, the crossings of the newest bucket of ``res_s`` (for NGSI-LD)."""
        t = TrafficCountRow
        with self._read() as s:
            newest = (
                select(t.site, t.camera, t.line_id, func.max(t.bucket).label("mb"))
                .where(t.res_s == res_s)
                .group_by(t.site, t.camera, t.line_id)
                .subquery()
            )
            rows = s.execute(
                select(t.site, t.camera, t.line_id, t.bucket, t.direction, func.sum(t.count))
                .join(
                    newest,
                    and_(
                        newest.c.site == t.site,
                        newest.c.camera == t.camera,
                        newest.c.line_id == t.line_id,
                        newest.c.mb == t.bucket,
                    ),
                )
                .where(t.res_s == res_s)
                .group_by(t.site, t.camera, t.line_id, t.bucket, t.direction)
                .order_by(t.site, t.camera, t.line_id, t.direction)
            ).all()
        return [(line_uid(r[0], r[1], r[2]), from_epoch(int(r[3])), r[4], int(r[5])) for r in rows]

    def overstays(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        lot: str | None = None,
        limit: int = 10_000,
    ) -> list[OverstayRecord]:
        """Overstays observed in [start, end), newest first."""
        o = OverstayRow
        conds: list[ColumnElement[bool]] = []
        if start is not None:
            conds.append(o.observed_at >= start)
        if end is not None:
            conds.append(o.observed_at < end)
        if lot is not None:
            conds.append(o.lot == lot)
        with self._read() as s:
            rows = s.execute(
                select(
                    o.event_id,
                    o.site,
                    o.camera,
                    o.zone_id,
                    o.lot,
                    o.since,
                    o.dwell_s,
                    o.limit_s,
                    o.observed_at,
                )
                .where(*conds)
                .order_by(o.observed_at.desc(), o.event_id)
                .limit(limit)
            ).all()
        return [OverstayRecord(*r) for r in rows]

    # -- API keys --------------------------------------------------------------------------

    def add_key(self, name: str, role: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        with self._write() as s:
            row = ApiKeyRow(name=name, role=role, key_hash=key_hash, prefix=prefix, created_at=utcnow())
            s.add(row)
            s.flush()
            return self._key_record(row)

    @staticmethod
    def _key_record(r: ApiKeyRow) -> ApiKeyRecord:
        return ApiKeyRecord(r.id, r.name, r.role, r.key_hash, r.prefix, r.created_at, r.revoked_at)

    def api_keys(self, *, include_revoked: bool = True) -> list[ApiKeyRecord]:
        with self._read() as s:
            q = select(ApiKeyRow).order_by(ApiKeyRow.id)
            if not include_revoked:
                q = q.where(ApiKeyRow.revoked_at.is_(None))
            return [self._key_record(r) for r in s.scalars(q)]

    def revoke_key(self, key_id: int) -> ApiKeyRecord | None:
        with self._write() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return self._key_record(row)

    def seen_count(self) -> int:
        with self._read() as s:
            return int(s.scalar(select(func.count()).select_from(SeenEventRow)) or 0)

    def zone_uids_of(self, cameras: Iterable[tuple[str, str]]) -> list[str]:
        pairs = list(cameras)
        if not pairs:
            return []
        with self._read() as s:
            return list(s.scalars(select(ZoneRow.uid).where(tuple_(ZoneRow.site, ZoneRow.camera).in_(pairs))))
