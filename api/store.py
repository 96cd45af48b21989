"""Current state, history and camera status behind the API, in any SQLAlchemy database.

SQLite (the default) is good for a district; PostgreSQL is the later scale-out. Only portable
SQL is used here — plain range queries for the spatial prefilter, JSON for health — so that the
same models serve both, and ``Base.metadata`` carries a naming convention that Alembic
migrations can be generated against.

Ingest is idempotent: every event id is remembered in ``seen_events`` inside the same
transaction that applies the event, so a retained message re-delivered on every reconnect, or a
QoS 1 re-send, changes nothing the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Engine,
    Index,
    MetaData,
    String,
    and_,
    create_engine,
    event,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from cityeye.api.geo import bounding_box, haversine_m
from cityeye.events.schema import (
    AreaState,
    CameraStatus,
    HealthEvent,
    OccupancyEvent,
    SpaceState,
    StatusEvent,
)

log = logging.getLogger(__name__)

Event = OccupancyEvent | StatusEvent | HealthEvent
"""Every event kind the store understands (traffic comes with its own issue)."""

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long an SQLite writer waits for another writer's lock before failing."""

_WRITE = "cityeye_write"
"""Execution option that marks a connection whose transaction will write (SQLite: BEGIN IMMEDIATE)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def zone_uid(site: str, camera: str, zone_id: str) -> str:
    """Zone ids are only unique per camera; the API id needs site and camera too."""
    return f"{site}:{camera}:{zone_id}"


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


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


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
    lon: Mapped[float | None]
    lat: Mapped[float | None]
    free: Mapped[int]
    total: Mapped[int]
    occupied: Mapped[bool | None] = mapped_column(doc="Spaces only; areas count vehicles instead.")
    score: Mapped[float | None]
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    event_id: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        # The nearby prefilter is a range on lat then lon; free rides along to skip full zones.
        Index(None, "lat", "lon", "free"),
        Index(None, "site", "camera"),
    )


class ZoneHistoryRow(Base):
    __tablename__ = "zone_history"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(400))
    observed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    free: Mapped[int]
    total: Mapped[int]

    __table_args__ = (Index(None, "uid", "observed_at"),)


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


class SeenEventRow(Base):
    __tablename__ = "seen_events"

    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


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


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    observed_at: datetime
    free: int
    total: int


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
    CameraRow.status,
)
_CAMERA_JOIN = and_(CameraRow.site == ZoneRow.site, CameraRow.camera == ZoneRow.camera)


def _is_memory_sqlite(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


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
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ValueError(
                f"cannot use database URL {url!r}: {exc} (is the database driver installed?)"
            ) from None
        if self.dialect == "sqlite":
            self._setup_sqlite(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)

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

    def create_all(self) -> None:
        """Create missing tables; Alembic migrations will take over once the schema evolves."""
        Base.metadata.create_all(self.engine)

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

    # -- ingest ----------------------------------------------------------------------------

    def apply(self, event: Event, *, received_at: datetime | None = None) -> bool:
        """Apply one event; False (and nothing changed) when its id was applied before.

        An occupancy snapshot older than the stored state of a zone leaves that zone's current
        state alone (an out-of-order replay must not turn back the clock) but still lands in
        the history, which is ordered by observation time anyway.
        """
        now = received_at or utcnow()
        try:
            with self._write() as s:
                if s.get(SeenEventRow, event.event_id) is not None:
                    return False
                s.add(SeenEventRow(event_id=event.event_id, received_at=now))
                s.flush()
                if isinstance(event, OccupancyEvent):
                    self._apply_occupancy(s, event, now)
                elif isinstance(event, StatusEvent):
                    self._apply_status(s, event)
                else:
                    self._apply_health(s, event)
        except IntegrityError:
            # Another writer (a second API instance on a shared subscription) won the race for
            # this event id; anything else is a real error.
            with self._read() as s:
                if s.get(SeenEventRow, event.event_id) is not None:
                    return False
            raise
        return True

    @staticmethod
    def _camera(s: Session, site: str, camera: str) -> CameraRow:
        row = s.get(CameraRow, (site, camera))
        if row is None:
            row = CameraRow(site=site, camera=camera)
            s.add(row)
        return row

    @staticmethod
    def _seen(row: CameraRow, at: datetime) -> None:
        if row.last_seen_at is None or at > row.last_seen_at:
            row.last_seen_at = at

    def _apply_occupancy(self, s: Session, ev: OccupancyEvent, now: datetime) -> None:
        states: dict[str, SpaceState | AreaState] = {zone_uid(ev.site, ev.camera, z.id): z for z in ev.zones}
        existing = {r.uid: r for r in s.scalars(select(ZoneRow).where(ZoneRow.uid.in_(list(states))))}
        if states:
            s.execute(
                insert(ZoneHistoryRow),
                [
                    {"uid": u, "observed_at": ev.observed_at, "free": z.free, "total": z.total}
                    for u, z in states.items()
                ],
            )
        for uid, z in states.items():
            row = existing.get(uid)
            if row is not None and row.observed_at > ev.observed_at:
                log.debug("zone %s: snapshot %s is older than the stored one; kept current", uid, ev.event_id)
                continue
            if row is None:
                row = ZoneRow(uid=uid, site=ev.site, camera=ev.camera, zone_id=z.id)
                s.add(row)
            row.kind = z.kind
            row.name = z.name
            row.lot = z.lot
            row.lon = z.lon
            row.lat = z.lat
            row.free = z.free
            row.total = z.total
            row.occupied = z.occupied if isinstance(z, SpaceState) else None
            row.score = z.score if isinstance(z, SpaceState) else None
            row.observed_at = ev.observed_at
            row.updated_at = now
            row.event_id = ev.event_id
        self._seen(self._camera(s, ev.site, ev.camera), ev.observed_at)

    def _apply_status(self, s: Session, ev: StatusEvent) -> None:
        """Statuses apply in arrival order, not by timestamp.

        The Last Will is composed when the edge connects, so the broker's ``offline`` carries
        a timestamp older than the ``online`` it must override. One publisher per camera and
        QoS 1 keep arrival order meaningful; an old retained copy is caught by its event id.
        """
        cam = self._camera(s, ev.site, ev.camera)
        cam.status = ev.status.value
        cam.detail = ev.detail
        cam.status_at = ev.observed_at
        if ev.status != CameraStatus.OFFLINE:  # the will speaks for a camera that is gone
            self._seen(cam, ev.observed_at)

    def _apply_health(self, s: Session, ev: HealthEvent) -> None:
        cam = self._camera(s, ev.site, ev.camera)
        if cam.health_at is None or ev.observed_at >= cam.health_at:
            cam.health = ev.health.model_dump(mode="json")
            cam.health_at = ev.observed_at
        self._seen(cam, ev.observed_at)

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def _record(row: Sequence[Any]) -> ZoneRecord:
        return ZoneRecord(*row)

    def zone(self, uid: str) -> ZoneRecord | None:
        with self._read() as s:
            row = s.execute(
                select(*_ZONE_COLUMNS).outerjoin(CameraRow, _CAMERA_JOIN).where(ZoneRow.uid == uid)
            ).first()
        return None if row is None else self._record(row)

    def nearby(
        self, lat: float, lon: float, radius_m: float, min_free: int = 1, limit: int = 20
    ) -> list[NearbyZone]:
        """Zones with at least ``min_free`` free places within ``radius_m``, nearest first.

        Two steps so that a dense city stays cheap: an indexed bounding-box query fetches
        only ids and coordinates of candidates, numpy computes exact distances, and only the
        ``limit`` winners are loaded in full. Zones without coordinates are never returned.
        """
        if limit <= 0:
            return []
        box = bounding_box(lat, lon, radius_m)
        lon_filter = or_(*(ZoneRow.lon.between(lo, hi) for lo, hi in box.lon_ranges))
        with self._read() as s:
            cand = s.execute(
                select(ZoneRow.uid, ZoneRow.lat, ZoneRow.lon).where(
                    ZoneRow.lat.between(box.min_lat, box.max_lat),
                    lon_filter,
                    ZoneRow.free >= min_free,
                )
            ).all()
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
            return [
                CameraRecord(
                    site=r.site,
                    camera=r.camera,
                    status=r.status,
                    detail=r.detail,
                    status_at=r.status_at,
                    last_seen_at=r.last_seen_at,
                    health=r.health,
                    health_at=r.health_at,
                )
                for r in rows
            ]

    def history(self, uid: str, limit: int = 100) -> list[HistoryPoint]:
        """Newest first; the base for occupancy charts and forecasting later."""
        with self._read() as s:
            rows = s.execute(
                select(ZoneHistoryRow.observed_at, ZoneHistoryRow.free, ZoneHistoryRow.total)
                .where(ZoneHistoryRow.uid == uid)
                .order_by(ZoneHistoryRow.observed_at.desc(), ZoneHistoryRow.id.desc())
                .limit(limit)
            ).all()
        return [HistoryPoint(*r) for r in rows]
