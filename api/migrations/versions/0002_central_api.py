"""Central API: history roll-ups (1 min, 15 min, 1 h), traffic counts, API keys, change revisions.

The skeleton's raw ``zone_history`` is folded into the roll-ups (no data is dropped) and removed.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from cityeye.api.store import UtcDateTime

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

RESOLUTIONS_S = (60, 900, 3600)  # frozen copy: a migration must not change when the code does


def upgrade() -> None:
    with op.batch_alter_table("zones") as b:
        b.add_column(sa.Column("vehicle", sa.String(32), nullable=True))
        b.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))
        b.add_column(sa.Column("rev", sa.BigInteger(), nullable=False, server_default="0"))
        b.create_index("ix_zones_rev", ["rev"])
    with op.batch_alter_table("cameras") as b:
        b.add_column(sa.Column("last_heard_at", UtcDateTime(), nullable=True))
        b.add_column(sa.Column("rev", sa.BigInteger(), nullable=False, server_default="0"))
        b.create_index("ix_cameras_rev", ["rev"])
    stats = op.create_table(
        "zone_stats",
        sa.Column("uid", sa.String(400), nullable=False),
        sa.Column("res_s", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("free_sum", sa.BigInteger(), nullable=False),
        sa.Column("free_min", sa.Integer(), nullable=False),
        sa.Column("free_max", sa.Integer(), nullable=False),
        sa.Column("total_max", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("uid", "res_s", "bucket", name="pk_zone_stats"),
    )
    op.create_index("ix_zone_stats_res_s_bucket", "zone_stats", ["res_s", "bucket"])
    op.create_table(
        "traffic_counts",
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("res_s", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(64), nullable=False),
        sa.Column("vclass", sa.String(32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "site", "camera", "line_id", "res_s", "bucket", "direction", "vclass", name="pk_traffic_counts"
        ),
    )
    op.create_index("ix_traffic_counts_res_s_bucket", "traffic_counts", ["res_s", "bucket"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )
    op.bulk_insert(meta, [{"key": "rev", "value": 1}])
    _fold_history(stats)
    op.drop_index("ix_zone_history_uid_observed_at", table_name="zone_history")
    op.drop_table("zone_history")


def _fold_history(stats: sa.Table) -> None:
    conn = op.get_bind()
    hist = sa.table(
        "zone_history",
        sa.column("uid", sa.String),
        sa.column("observed_at", UtcDateTime()),
        sa.column("free", sa.Integer),
        sa.column("total", sa.Integer),
    )
    acc: dict[tuple[str, int, int], list[int]] = {}
    for uid, at, free, total in conn.execute(
        sa.select(hist.c.uid, hist.c.observed_at, hist.c.free, hist.c.total)
    ):
        if isinstance(at, str):  # raw SQLite text when the type is not applied
            at = datetime.fromisoformat(at)
        t = int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())
        for res in RESOLUTIONS_S:
            a = acc.setdefault((uid, res, t - t % res), [0, 0, free, free, total])
            a[0] += 1
            a[1] += free
            a[2] = min(a[2], free)
            a[3] = max(a[3], free)
            a[4] = max(a[4], total)
    if acc:
        op.bulk_insert(
            stats,
            [
                {
                    "uid": k[0],
                    "res_s": k[1],
                    "bucket": k[2],
                    "samples": v[0],
                    "free_sum": v[1],
                    "free_min": v[2],
                    "free_max": v[3],
                    "total_max": v[4],
                }
                for k, v in acc.items()
            ],
        )


def downgrade() -> None:
    op.create_table(
        "zone_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(400), nullable=False),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.Column("free", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_zone_history"),
    )
    op.create_index("ix_zone_history_uid_observed_at", "zone_history", ["uid", "observed_at"])
    op.drop_table("meta")
    op.drop_table("api_keys")
    op.drop_table("traffic_counts")
    op.drop_table("zone_stats")
    with op.batch_alter_table("cameras") as b:
        b.drop_index("ix_cameras_rev")
        b.drop_column("rev")
        b.drop_column("last_heard_at")
    with op.batch_alter_table("zones") as b:
        b.drop_index("ix_zones_rev")
        b.drop_column("rev")
        b.drop_column("active")
        b.drop_column("vehicle")
