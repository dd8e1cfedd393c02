"""control API state: faults, request journal, job modes, snapshots

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('control_faults',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=True),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('retry_after', sa.Integer(), nullable=True),
    sa.Column('delay_ms', sa.Integer(), nullable=True),
    sa.Column('times_left', sa.Integer(), nullable=True),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('control_requests',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('faulted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('control_requests', schema=None) as batch_op:
        batch_op.create_index('ix_control_requests_account', ['account_id', 'id'], unique=False)
    op.create_table('control_job_modes',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('control_snapshots',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('account_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('document', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('control_snapshots')
    op.drop_table('control_job_modes')
    with op.batch_alter_table('control_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_control_requests_account')
    op.drop_table('control_requests')
    op.drop_table('control_faults')
