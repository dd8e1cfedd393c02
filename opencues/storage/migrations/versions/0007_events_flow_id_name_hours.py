"""analytics: a stored events.flow_id (attributes.flowId) and its index; hourly event counts by name

Replaces migration 0005's two indexes, whose upkeep cost track and imports more than they may
(bench/README.md): the expression index on ``attributes.flowId`` re-parsed every event's JSON on
insert, the (account, name, time) index took an entry per event for counts that the small
``event_name_hours`` table now holds.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opencues.storage.expressions import AttributeText

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# attributes.flowId as text when a scalar, as ``opencues.events.flow_id_of`` computes it for new events.
_FLOW_ID = {
    'sqlite': ("CASE json_type(attributes, '$.flowId') WHEN 'text' THEN json_extract(attributes, '$.flowId') "
               "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
               "WHEN 'integer' THEN CAST(json_extract(attributes, '$.flowId') AS TEXT) "
               "WHEN 'real' THEN CAST(json_extract(attributes, '$.flowId') AS TEXT) END"),
    'postgresql': ("CASE WHEN jsonb_typeof(attributes -> 'flowId') IN ('string', 'number', 'boolean') "
                   "THEN attributes ->> 'flowId' END"),
}
_BATCH_IDS = 100_000  # events per UPDATE: bounds one statement's undo/journal on a large table
_HOUR_MS = 3_600_000
_SHIFT_HOURS = 1_000_000_000  # floor division by an hour for times before 1970 too


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('flow_id', sa.Text(), nullable=True))
    op.drop_index('ix_events_flow_time', table_name='events')
    op.drop_index('ix_events_name_time', table_name='events')
    flow_id = _FLOW_ID[bind.dialect.name]
    low, high = bind.execute(sa.text('SELECT min(id), max(id) FROM events')).one()
    if low is not None:
        for start in range(low, high + 1, _BATCH_IDS):
            bind.execute(sa.text(f'UPDATE events SET flow_id = {flow_id} WHERE id >= :start AND id < :end AND {flow_id} IS NOT NULL'),
                         {'start': start, 'end': start + _BATCH_IDS})
    where = sa.text('flow_id IS NOT NULL')
    op.create_index('ix_events_flow_time', 'events', ['account_id', 'flow_id', 'timestamp'],
                    sqlite_where=where, postgresql_where=where)
    op.create_table('event_name_hours',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('hour', sa.BigInteger(), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'hour', 'name'),
    sqlite_with_rowid=False,
    )
    hour = f'("timestamp" + {_SHIFT_HOURS * _HOUR_MS}) / {_HOUR_MS} - {_SHIFT_HOURS}'
    bind.execute(sa.text(f'INSERT INTO event_name_hours (account_id, name, hour, events) '
                         f'SELECT account_id, name, {hour}, count(*) FROM events GROUP BY account_id, name, {hour}'))


def downgrade() -> None:
    op.drop_table('event_name_hours')
    op.drop_index('ix_events_flow_time', table_name='events')
    with op.batch_alter_table('events') as batch:
        batch.drop_column('flow_id')
    op.create_index('ix_events_flow_time', 'events', ['account_id', AttributeText(sa.column('attributes'), 'flowId'), 'timestamp'])
    op.create_index('ix_events_name_time', 'events', ['account_id', 'name', 'timestamp'])
