"""ix_events_name_time again: analytics filtered by an event name (users by day for one name, a
Studio chart) reads that name's events, not every event of the window

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

0007 dropped 0005's name index because counts of events by name come from ``event_name_hours``;
but distinct users (and any metric other than a count) of one name still read the events, and
without it a 30-day window of 1,000,000 events took 0.58 s instead of ~0.1 s
(``bench/bench_studio.py``). The price is one more index entry per event written.
"""
from alembic import op

from opencues import event_partitions

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_events_name_time', 'events', ['account_id', 'name', 'timestamp'])
    event_partitions.name_every_partition_index(op.get_bind())  # its partitions' copies, named after it


def downgrade() -> None:
    op.drop_index('ix_events_name_time', table_name='events')
