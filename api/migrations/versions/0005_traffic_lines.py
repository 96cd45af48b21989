"""Traffic lines: where each counting line is (WGS84), from the edge's calibrated traffic events.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cityeye.api.store import UtcDateTime

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "traffic_lines",
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("line_id", sa.String(128), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("site", "camera", "line_id", name="pk_traffic_lines"),
    )


def downgrade() -> None:
    op.drop_table("traffic_lines")
