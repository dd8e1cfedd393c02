"""analytics: events by flow id and time (an index on the expression attributes.flowId), by name and time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opencues.storage.expressions import AttributeText

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The analytics queries' flow_id conditions (and every NPS metric) read this expression.
    op.create_index('ix_events_flow_time', 'events', ['account_id', AttributeText(sa.column('attributes'), 'flowId'), 'timestamp'])
    # Counts by event name (the top-names and digest queries) read this index alone, in name order.
    op.create_index('ix_events_name_time', 'events', ['account_id', 'name', 'timestamp'])


def downgrade() -> None:
    op.drop_index('ix_events_name_time', table_name='events')
    op.drop_index('ix_events_flow_time', table_name='events')
