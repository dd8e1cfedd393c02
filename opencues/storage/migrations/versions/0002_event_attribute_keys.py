"""event attribute-key catalogue, backfilled from the stored events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""
from alembic import op
import sqlalchemy as sa

from opencues import attribute_keys

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('event_attribute_keys',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('path_sha256', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'path_sha256', 'type')
    )
    # Exports trust the catalogue to cover every stored event: walk the events already there
    # (one streaming pass over the table, in this migration's transaction).
    attribute_keys.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table('event_attribute_keys')
