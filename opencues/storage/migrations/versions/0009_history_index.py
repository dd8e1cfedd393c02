"""hot-path indexes: ix_events_user_time ends with id, the history's tie-break (one index range read in the history's order); ix_profiles_group holds only grouped profiles

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opencues import event_partitions

revision = '0009'
# Plain CREATE INDEX on the events table works whether it is partitioned (0008, PostgreSQL) or not.
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The history orders by (timestamp DESC, id DESC). Without id in the index PostgreSQL sorts
    # every event of the user (or, with stale statistics, walks the account's time index
    # backwards); SQLite had the rowid at the end of every index entry already.
    op.drop_index('ix_events_user_time', table_name='events')
    op.create_index('ix_events_user_time', 'events', ['account_id', 'user_id', 'timestamp', 'id'])
    event_partitions.name_every_partition_index(op.get_bind())  # its partitions' copies, named after it
    # A profile look-up by (account, user) must read the primary key: with no statistics
    # PostgreSQL took this index for the account alone. Partial, it can serve only queries that
    # name a group (``group_id = …`` implies the predicate on both databases).
    op.drop_index('ix_profiles_group', table_name='profiles')
    where = sa.text('group_id IS NOT NULL')
    op.create_index('ix_profiles_group', 'profiles', ['account_id', 'group_id'], sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    op.drop_index('ix_profiles_group', table_name='profiles')
    op.create_index('ix_profiles_group', 'profiles', ['account_id', 'group_id'])
    op.drop_index('ix_events_user_time', table_name='events')
    op.create_index('ix_events_user_time', 'events', ['account_id', 'user_id', 'timestamp'])
    event_partitions.name_every_partition_index(op.get_bind())  # its partitions' copies, named after it
