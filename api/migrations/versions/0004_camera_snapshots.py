"""Camera snapshots: the newest JPEG per camera (``SnapshotEvent``) for the operator dashboard.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from cityeye.api.store import UtcDateTime

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "camera_snapshots",
        sa.Column("site", sa.String(128), nullable=False),
        sa.Column("camera", sa.String(128), nullable=False),
        sa.Column("observed_at", UtcDateTime(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("jpeg", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("site", "camera", name="pk_camera_snapshots"),
    )
    with op.batch_alter_table("cameras") as batch:
        batch.add_column(sa.Column("snapshot_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cameras") as batch:
        batch.drop_column("snapshot_at")
    op.drop_table("camera_snapshots")
