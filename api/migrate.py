"""Schema migrations (Alembic), driven from the site configuration instead of an alembic.ini.

``cityeye api`` upgrades at start (``api.migrate``), ``cityeye db upgrade`` does it alone (for a
deployment that runs migrations as a separate step). A database made by the walking skeleton's
``create_all`` has the tables but no version: it is stamped as revision 0001 and upgraded.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

log = logging.getLogger(__name__)
# Alembic logs every plugin and context at INFO; the revisions it runs are what an operator needs.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SKELETON_REVISION = "0001"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty (or pre-Alembic) database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Upgrade to ``revision``; safe to run from several replicas at once. Returns the new revision."""
    cfg = alembic_config()
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and {"zones", "zone_history", "cameras"} <= tables:
        log.info("database has the walking-skeleton tables without a version: stamping %s", SKELETON_REVISION)
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.stamp(cfg, SKELETON_REVISION)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    rev = current(engine)
    assert rev is not None
    return rev


def downgrade(engine: Engine, revision: str) -> str | None:
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    return current(engine)
