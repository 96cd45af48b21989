"""The walking-skeleton schema (what its ``create_all`` made), so old databases upgrade in place.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cityeye.api.store import UtcDateTime

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "zones",
        sa.Column("uid", sa.String(400), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("zone_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("lot", sa.String(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("free", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("occupied", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("uid", name="pk_zones"),
    )
    op.create_index("ix_zones_lat_lon_free", "zones", ["lat", "lon", "free"])
    op.create_index("ix_zones_site_camera", "zones", ["site", "camera"])
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
    op.create_table(
        "cameras",
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("detail", sa.String(), nullable=True),
        sa.Column("status_at", UtcDateTime(), nullable=True),
        sa.Column("last_seen_at", UtcDateTime(), nullable=True),
        sa.Column("health", sa.JSON(), nullable=True),
        sa.Column("health_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("site", "camera", name="pk_cameras"),
    )
    op.create_table(
        "seen_events",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_seen_events"),
    )
    op.create_index("ix_seen_events_received_at", "seen_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("seen_events")
    op.drop_table("cameras")
    op.drop_table("zone_history")
    op.drop_table("zones")
