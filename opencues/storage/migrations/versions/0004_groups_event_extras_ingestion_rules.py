"""groups, a user's current group, event group_id/context, ingestion filtering rules

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    # Nullable columns without a default: instant on both databases, whatever the table's size.
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('group_id', sa.Text(), nullable=True))
        batch.add_column(sa.Column('context', JSON_DOCUMENT, nullable=True))
    # Partial indexes, empty for the events already stored (none has a group or a context yet).
    for column in ('group_id', 'context'):
        where = sa.text(f'{column} IS NOT NULL')
        op.create_index(f'ix_events_{column.removesuffix("_id")}_time', 'events', ['account_id', 'timestamp'],
                        sqlite_where=where, postgresql_where=where)
    with op.batch_alter_table('profiles') as batch:
        batch.add_column(sa.Column('group_id', sa.Text(), nullable=True))
    op.create_index('ix_profiles_group', 'profiles', ['account_id', 'group_id'])
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('ingestions_filtered', sa.BigInteger(), nullable=False, server_default=sa.text('0')))
    op.create_table('groups',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('group_id', sa.Text(), nullable=False),
    sa.Column('attributes', JSON_DOCUMENT, nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'group_id')
    )
    op.create_table('ingestion_rules',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('rules', JSON_DOCUMENT, nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id')
    )


def downgrade() -> None:
    op.drop_table('ingestion_rules')
    op.drop_table('groups')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_column('ingestions_filtered')
    op.drop_index('ix_profiles_group', table_name='profiles')
    with op.batch_alter_table('profiles') as batch:
        batch.drop_column('group_id')
    op.drop_index('ix_events_context_time', table_name='events')
    op.drop_index('ix_events_group_time', table_name='events')
    with op.batch_alter_table('events') as batch:
        batch.drop_column('context')
        batch.drop_column('group_id')
