"""the request journal in the order its responses left, across server processes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Each server process commits its journal entries from a thread of its own, within 10 ms, so with
``--workers 2`` the row ids follow the order of those commits, not of the requests: a client's
fifth request could be listed before its fourth. ``GET /-/requests`` now orders by the time each
response left (then the id, which orders one process's entries of the same millisecond); these
indexes serve that order with and without an account.
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('control_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_control_requests_account')
        batch_op.create_index('ix_control_requests_account', ['account_id', 'time', 'id'], unique=False)
        batch_op.create_index('ix_control_requests_time', ['time', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('control_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_control_requests_time')
        batch_op.drop_index('ix_control_requests_account')
        batch_op.create_index('ix_control_requests_account', ['account_id', 'id'], unique=False)
