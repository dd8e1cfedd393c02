"""content: tags, the eight experience types, SDK keys; flows gain tag_ids

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

JsonDocument = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Nullable, so existing flows need no rewrite: NULL reads as no tags.
    with op.batch_alter_table('flows') as batch:
        batch.add_column(sa.Column('tag_ids', JsonDocument, nullable=True))
    op.create_table('tags',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('updated_by', sa.String(length=128), nullable=True),
    sa.PrimaryKeyConstraint('account_id', 'id')
    )
    op.create_table('experiences',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('published', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('updated_by', sa.String(length=128), nullable=True),
    sa.Column('document', JsonDocument, nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'kind', 'id')
    )
    op.create_index('ix_experiences_id', 'experiences', ['account_id', 'id'], unique=False)
    op.create_table('sdk_keys',
    sa.Column('account_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('tag_field', sa.Text(), nullable=True),
    sa.Column('secret_sha256', sa.String(length=64), nullable=False),
    sa.Column('enforcement_mode', sa.Boolean(), nullable=False),
    sa.Column('secure_data_ingest', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'id')
    )


def downgrade() -> None:
    op.drop_table('sdk_keys')
    op.drop_index('ix_experiences_id', table_name='experiences')
    op.drop_table('experiences')
    op.drop_table('tags')
    with op.batch_alter_table('flows') as batch:
        batch.drop_column('tag_ids')
