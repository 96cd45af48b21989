"""Alembic migrations on real SQLite and PostgreSQL: upgrade, models == migrations, skeleton databases."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from cityeye.api import migrate
from cityeye.api.store import Base, Store
from tests.test_api_support import Postgres, postgres

__all__ = ["postgres"]  # the session fixture, re-exported for pytest

BACKENDS = ["sqlite", "postgresql"]


def url_for(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.url()


@pytest.mark.parametrize("backend", BACKENDS)
def test_upgrade_gives_the_models_schema(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store = Store(url_for(backend, tmp_path, request))
    try:
        assert migrate.current(store.engine) is None
        assert store.migrate() == migrate.head()
        assert store.migrate() == migrate.head()  # idempotent: a second replica starting finds it done
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree (write a migration): {diff}"
        # Down and up again: the downgrade path works too.
        assert migrate.downgrade(store.engine, "0001") == "0001"
        assert store.migrate() == migrate.head()
    finally:
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_skeleton_database_is_upgraded_in_place_keeping_its_history(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = url_for(backend, tmp_path, request)
    store = Store(url)
    try:
        # What the walking skeleton left behind: its tables (revision 0001) without a version table.
        migrate.upgrade(store.engine, "0001")
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
            t = datetime(2025, 5, 1, 12, 0, 10, tzinfo=UTC)
            rows = [
                ("demo:c:a", t, 3, 4),
                ("demo:c:a", t.replace(second=40), 1, 4),
                ("demo:c:a", t.replace(minute=20), 4, 4),
            ]
            for uid, at, free, total in rows:
                conn.execute(
                    text("INSERT INTO zone_history (uid, observed_at, free, total) VALUES (:u, :t, :f, :n)"),
                    {
                        "u": uid,
                        "t": at if backend == "postgresql" else at.replace(tzinfo=None),
                        "f": free,
                        "n": total,
                    },
                )
        assert store.migrate() == migrate.head()
        assert "zone_history" not in inspect(store.engine).get_table_names()
        minute = store.history("demo:c:a", bucket_s=60)
        assert [(p.start.minute, p.samples, p.free_avg, p.free_min, p.free_max) for p in minute] == [
            (0, 2, 2.0, 1, 3),
            (20, 1, 4.0, 4, 4),
        ]
        (hour,) = store.history("demo:c:a", bucket_s=3600)
        assert (hour.samples, hour.free_avg, hour.total) == (3, round(8 / 3, 3), 4)
    finally:
        store.close()


def test_db_upgrade_command(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    cfg = tmp_path / "site.yaml"
    cfg.write_text(f"site: demo\napi:\n  database_url: sqlite:///{db}\n")

    def cityeye(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cityeye", *args], capture_output=True, text=True, timeout=120, check=False
        )

    cur = cityeye("db", "current", "--config", str(cfg))
    assert cur.returncode == 1 and json.loads(cur.stdout)["current"] is None
    up = cityeye("db", "upgrade", "--config", str(cfg))
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout) | {"database": None} == {
        "database": None,
        "from": None,
        "to": migrate.head(),
    }
    cur = cityeye("db", "current", "--config", str(cfg))
    assert cur.returncode == 0 and json.loads(cur.stdout)["current"] == migrate.head()
    key = cityeye("db", "create-key", "--config", str(cfg), "--name", "first admin", "--role", "admin")
    assert key.returncode == 0, key.stderr
    out = json.loads(key.stdout)
    assert out["role"] == "admin" and out["key"].startswith("ce_") and len(out["key"]) > 40
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT key_hash FROM api_keys")).scalar_one()
    engine.dispose()
    assert out["key"] not in stored and len(stored) == 64  # only the SHA-256 is kept
    bad = cityeye("db", "upgrade", "--config", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 2 and "not found" in bad.stderr
