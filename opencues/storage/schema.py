"""The tables, in one place. Alembic migrations under ``migrations/versions`` create them;
``tests/unit/storage/test_migrations.py`` checks the migrated database matches these definitions.

Instants are integer epoch milliseconds (see ``opencues.timestamps``). JSON columns are TEXT on
SQLite (queried with ``json_extract``) and JSONB on PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


metadata = MetaData()

JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias).
AutoId = BigInteger().with_variant(Integer(), "sqlite")

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("read_only", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
    ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
)

flows = Table(
    "flows",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("id", String(128), nullable=False),
    Column("name", Text, nullable=False),
    Column("published", Boolean, nullable=False, default=False),
    Column("frequency", String(32), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("published_at", BigInteger, nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    # The flow's tag ids (a JSON array); NULL (flows stored before tags existed) reads as [].
    Column("tag_ids", JsonDocument, nullable=True),
    PrimaryKeyConstraint("account_id", "id"),
)

segments = Table(
    "segments",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("updated_by", String(128), nullable=True),
    PrimaryKeyConstraint("account_id", "id"),
)

# Membership is read by the export's `user_segment_id` condition: (account, segment) → user ids
# is the primary key's prefix, and (account, user) serves "which segments is this user in".
segment_members = Table(
    "segment_members",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("segment_id", String(64), nullable=False),
    Column("user_id", Text, nullable=False),
    PrimaryKeyConstraint("account_id", "segment_id", "user_id"),
    Index("ix_segment_members_user", "account_id", "user_id"),
)

profiles = Table(
    "profiles",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("attributes", JsonDocument, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    # The group the user currently belongs to (``POST groups/{id}/users``; migration 0004).
    Column("group_id", Text, nullable=True),
    PrimaryKeyConstraint("account_id", "user_id"),
    # Only the profiles in a group: a look-up by user can never take this index for the account
    # alone (with no statistics PostgreSQL did, over the primary key, scanning a whole account).
    Index("ix_profiles_group", "account_id", "group_id",
          sqlite_where=text("group_id IS NOT NULL"), postgresql_where=text("group_id IS NOT NULL")),
)

# Tens of millions of rows per account: a user's history is a range scan of
# ix_events_user_time (newest first; id last, the history's tie-break, so the index delivers its
# exact order and no plan needs a sort), an export's time range a scan of ix_events_time.
# On PostgreSQL the table is partitioned by month of ``timestamp`` (migration 0008,
# ``opencues.event_partitions``) and its primary key is ``(id, timestamp)``; ids still come from
# one sequence. SQLite keeps ``id`` as its rowid.
events = Table(
    "events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("account_id", String(64), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("attributes", JsonDocument, nullable=False),
    # Optional companions of a tracked event (``opencues.events``; migration 0004).
    Column("group_id", Text, nullable=True),
    Column("context", JsonDocument, nullable=True),
    # ``attributes.flowId`` as text, stored by every writer (``opencues.events.flow_id_of``;
    # migration 0007): analytics reads a flow's or NPS survey's events through it.
    Column("flow_id", Text, nullable=True),
    Index("ix_events_user_time", "account_id", "user_id", "timestamp", "id"),
    Index("ix_events_time", "account_id", "timestamp"),
    # Analytics filtered by an event name (migration 0010; counts alone come from event_name_hours).
    Index("ix_events_name_time", "account_id", "name", "timestamp"),
    # Only the events that carry a group (a context): a CSV export asks whether its time range
    # holds any, to add that column, with one index lookup; events without one pay nothing.
    Index("ix_events_group_time", "account_id", "timestamp",
          sqlite_where=text("group_id IS NOT NULL"), postgresql_where=text("group_id IS NOT NULL")),
    Index("ix_events_context_time", "account_id", "timestamp",
          sqlite_where=text("context IS NOT NULL"), postgresql_where=text("context IS NOT NULL")),
)

# Analytics (``opencues.analytics_sql``): a flow's or NPS survey's events by time (migration
# 0007). Partial: events without a flow id (most custom events) pay nothing.
Index("ix_events_flow_time", events.c.account_id, events.c.flow_id, events.c.timestamp,
      sqlite_where=text("flow_id IS NOT NULL"), postgresql_where=text("flow_id IS NOT NULL"))

# Exact event counts per account, name and UTC hour (``opencues.event_counts``), kept by every
# writer of events in the same transaction as the events: analytics counts by name read these
# (a few thousand rows for 90 days) instead of millions of events (migration 0007).
event_name_hours = Table(
    "event_name_hours",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("hour", BigInteger, nullable=False),  # floor(timestamp / 3,600,000)
    Column("events", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "hour", "name"),
    sqlite_with_rowid=False,  # one B-tree, not a table and its key's index: fewer pages per commit
)

# The attribute-key catalogue (``opencues.attribute_keys``): every (path, JSON type) pair that an
# account's events carry, written in the same transaction as those events. A CSV export takes its
# column candidates and cell types from it. ``path`` is the key path as a JSON array
# (``["properties","plan"]``: keys may contain dots); ``type`` is string, number, boolean, null,
# array or object. The key holds the path's SHA-256, not the path: a PostgreSQL B-tree entry is
# limited to ~2.7 kB, and an attribute key may be longer.
event_attribute_keys = Table(
    "event_attribute_keys",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("path_sha256", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("path", Text, nullable=False),
    PrimaryKeyConstraint("account_id", "path_sha256", "type"),
)

# Offline jobs: the row holds the status (see opencues.jobs.JobStatus), the claim (lease) and the
# progress mark that import batches commit in their own transaction; job_events is the history
# the API shows as `events`.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("params", JsonDocument, nullable=False),
    Column("payload_key", Text, nullable=True),
    Column("payload_format", String(16), nullable=True),
    Column("rows_done", BigInteger, nullable=False, default=0),
    Column("ingestions_completed", BigInteger, nullable=False, default=0),
    Column("ingestions_failed", BigInteger, nullable=False, default=0),
    Column("requests_failed", BigInteger, nullable=False, default=0),
    # Rows or attribute values dropped by the account's ingestion filtering rules (migration 0004).
    Column("ingestions_filtered", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("row_errors", JsonDocument, nullable=False),
    Column("runtime_ms", BigInteger, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", BigInteger, nullable=True),
    Index("ix_jobs_account_started", "account_id", "started_at"),
    Index("ix_jobs_claim", "status", "lease_expires_at"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("attributes", JsonDocument, nullable=False),
    ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
    Index("ix_job_events_job", "job_id", "id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_sha256", String(64), nullable=False),
    Column("job_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "key"),
    Index("ix_idempotency_created", "created_at"),
)

# Content tags (``opencues.tags``). Unlike flows, every field but the id may be null.
tags = Table(
    "tags",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("id", String(128), nullable=False),
    Column("name", Text, nullable=True),
    Column("created_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    PrimaryKeyConstraint("account_id", "id"),
)

# The eight experience types (``opencues.experiences``): ``kind`` is the API's resource name
# (``pins``, ``checklists``, ``flows-v2``…). What publishing changes lives in columns; the rest of
# the object (steps, traits, items, styles…) is kept as the document it was loaded as.
# ``ix_experiences_id`` serves the screenshots route, where the id alone names the content.
experiences = Table(
    "experiences",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("id", String(128), nullable=False),
    Column("published", Boolean, nullable=False, default=False),
    Column("state", String(32), nullable=True),
    Column("created_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=True),
    Column("updated_by", String(128), nullable=True),
    Column("document", JsonDocument, nullable=False),
    PrimaryKeyConstraint("account_id", "kind", "id"),
    Index("ix_experiences_id", "account_id", "id"),
)

# SDK identity-verification keys (``opencues.sdk_keys``): the secret is kept only as its SHA-256.
sdk_keys = Table(
    "sdk_keys",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("tag_field", Text, nullable=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("enforcement_mode", Boolean, nullable=False, default=False),
    Column("secure_data_ingest", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "id"),
)

# Groups (accounts/companies of end users): a flat bag of properties per (account, group), merged
# like profiles. A user's current group is ``profiles.group_id``.
groups = Table(
    "groups",
    metadata,
    Column("account_id", String(64), nullable=False),
    Column("group_id", Text, nullable=False),
    Column("attributes", JsonDocument, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    PrimaryKeyConstraint("account_id", "group_id"),
)

# An account's ingestion filtering rules (``opencues.ingestion_rules``): the saved rules object,
# and a version bumped by every save.
ingestion_rules = Table(
    "ingestion_rules",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("rules", JsonDocument, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# The control API (``opencues.control``, under ``/-/``): test-harness state kept in the database so
# every server process sees it. Faults injected into matching requests (``opencues.faults``):
# ``path`` is a glob on the request path; ``times_left`` NULL means "until removed".
control_faults = Table(
    "control_faults",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("method", String(16), nullable=True),
    Column("path", Text, nullable=False),
    Column("account_id", String(64), nullable=True),
    Column("status", Integer, nullable=True),
    Column("detail", Text, nullable=True),
    Column("retry_after", Integer, nullable=True),
    Column("delay_ms", Integer, nullable=True),
    Column("times_left", Integer, nullable=True),
    Column("probability", Float, nullable=True),
    Column("created_at", BigInteger, nullable=False),
)

# The request journal (``opencues.journal``): the last requests, newest = highest id.
control_requests = Table(
    "control_requests",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("time", BigInteger, nullable=False),
    Column("method", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Column("query", Text, nullable=False),
    Column("headers", JsonDocument, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("account_id", String(64), nullable=True),
    Column("faulted", Boolean, nullable=False),
    # Listed newest first by the time each response left (migration 0011): ids follow the order
    # of each process's commits, which with several server processes is not the requests' order.
    Index("ix_control_requests_account", "account_id", "time", "id"),
    Index("ix_control_requests_time", "time", "id"),
)

# Accounts whose jobs do not run the usual way: "instant" (run inside the request that submits
# them) or "manual" (held until ``POST /-/jobs/{id}/run``). No row: "auto".
control_job_modes = Table(
    "control_job_modes",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("mode", String(16), nullable=False),
)

# Saved snapshots (``opencues.snapshots``): the snapshot document itself, as JSON text.
control_snapshots = Table(
    "control_snapshots",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("account_id", String(64), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("document", Text, nullable=False),
)
