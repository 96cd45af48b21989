"""Overstays: a space occupied past its dwell limit (``OverstayEvent``), kept for enforcement.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cityeye.api.store import UtcDateTime

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "overstays",
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("zone_id", sa.String(128), nullable=False),
        sa.Column("lot", sa.String(), nullable=True),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("dwell_s", sa.Double(), nullable=False),
        sa.Column("limit_s", sa.Double(), nullable=False),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_overstays"),
    )
    op.create_index("ix_overstays_observed_at", "overstays", ["observed_at"])


def downgrade() -> None:
    op.drop_index("ix_overstays_observed_at", table_name="overstays")
    op.drop_table("overstays")
