"""Initial schema: ownership, topology, offerings, configuration and events

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 23:51:58.079890
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('configuration',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=True),
    sa.Column('default_value', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
    sa.Column('value_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scopes', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
    sa.Column('updated', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('diskoffering',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('display_text', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('disk_size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('is_customized', sa.Boolean(), nullable=False),
    sa.Column('storage_tags', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('provisioning_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('uuid')
    )
    op.create_table('domain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['domain.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path'),
    sa.UniqueConstraint('uuid')
    )
    op.create_table('serviceoffering',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('display_text', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('cpu_count', sa.Integer(), nullable=False),
    sa.Column('cpu_mhz', sa.Integer(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('host_tags', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('storage_tags', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('offer_ha', sa.Boolean(), nullable=False),
    sa.Column('limit_cpu_use', sa.Boolean(), nullable=False),
    sa.Column('deployment_planner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('is_system', sa.Boolean(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('uuid')
    )
    op.create_table('zone',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('network_type', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('dns1', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('dns2', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('internal_dns1', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('internal_dns2', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('guest_cidr', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('network_domain', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('allocation_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    sa.UniqueConstraint('uuid')
    )
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('account_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domain.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('domain_id', 'name'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_domain_id'), ['domain_id'], unique=False)

    op.create_table('configurationoverride',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('scope_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('scope_id', sa.Integer(), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
    sa.Column('updated', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['name'], ['configuration.name'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'scope_type', 'scope_id')
    )
    op.create_table('imagestore',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('protocol', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('capacity_bytes', sa.BigInteger(), nullable=False),
    sa.Column('used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('read_only', sa.Boolean(), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['zone_id'], ['zone.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid'),
    sa.UniqueConstraint('zone_id', 'name')
    )
    with op.batch_alter_table('imagestore', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_imagestore_zone_id'), ['zone_id'], unique=False)

    op.create_table('pod',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('gateway', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('netmask', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('cidr', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('start_ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('end_ip', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('allocation_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['zone_id'], ['zone.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid'),
    sa.UniqueConstraint('zone_id', 'name')
    )
    with op.batch_alter_table('pod', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pod_zone_id'), ['zone_id'], unique=False)

    op.create_table('cluster',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('pod_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('hypervisor', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('cpu_overprovisioning_factor', sa.Float(), nullable=True),
    sa.Column('mem_overprovisioning_factor', sa.Float(), nullable=True),
    sa.Column('cpu_disable_threshold', sa.Float(), nullable=True),
    sa.Column('mem_disable_threshold', sa.Float(), nullable=True),
    sa.Column('allocation_state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['pod_id'], ['pod.id'], ),
    sa.ForeignKeyConstraint(['zone_id'], ['zone.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pod_id', 'name'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('cluster', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cluster_pod_id'), ['pod_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cluster_zone_id'), ['zone_id'], unique=False)

    op.create_table('user',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('first_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('last_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_account_id'), ['account_id'], unique=False)

    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('resource_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('resource_uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('resource_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=4096), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_created'), ['created'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_event_type'), ['event_type'], unique=False)

    op.create_table('host',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('pod_id', sa.Integer(), nullable=False),
    sa.Column('cluster_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('uri', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('hypervisor', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('hypervisor_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('libvirt_version', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('hostname', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('cpu_model', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('cpu_sockets', sa.Integer(), nullable=False),
    sa.Column('cpu_cores', sa.Integer(), nullable=False),
    sa.Column('cpu_mhz', sa.Integer(), nullable=False),
    sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('resource_state', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('cpu_used_mhz', sa.BigInteger(), nullable=False),
    sa.Column('cpu_reserved_mhz', sa.BigInteger(), nullable=False),
    sa.Column('memory_used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('memory_reserved_bytes', sa.BigInteger(), nullable=False),
    sa.Column('capacity_version', sa.Integer(), nullable=False),
    sa.Column('last_seen', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['cluster.id'], ),
    sa.ForeignKeyConstraint(['pod_id'], ['pod.id'], ),
    sa.ForeignKeyConstraint(['zone_id'], ['zone.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cluster_id', 'name'),
    sa.UniqueConstraint('uri'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('host', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_host_cluster_id'), ['cluster_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_host_pod_id'), ['pod_id'], unique=False)
        batch_op.create_index('ix_host_zone_status', ['zone_id', 'status'], unique=False)

    op.create_table('storagepool',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.Column('pod_id', sa.Integer(), nullable=True),
    sa.Column('cluster_id', sa.Integer(), nullable=True),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('pool_type', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('server', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('path', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
    sa.Column('libvirt_pool_name', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('capacity_bytes', sa.BigInteger(), nullable=False),
    sa.Column('used_bytes', sa.BigInteger(), nullable=False),
    sa.Column('allocated_bytes', sa.BigInteger(), nullable=False),
    sa.Column('overprovisioning_factor', sa.Float(), nullable=True),
    sa.Column('capacity_disable_threshold', sa.Float(), nullable=True),
    sa.Column('allocated_disable_threshold', sa.Float(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['cluster_id'], ['cluster.id'], ),
    sa.ForeignKeyConstraint(['pod_id'], ['pod.id'], ),
    sa.ForeignKeyConstraint(['zone_id'], ['zone.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid'),
    sa.UniqueConstraint('zone_id', 'name')
    )
    with op.batch_alter_table('storagepool', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storagepool_cluster_id'), ['cluster_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storagepool_pod_id'), ['pod_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_storagepool_zone_id'), ['zone_id'], unique=False)

    op.create_table('hosttag',
    sa.Column('host_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.ForeignKeyConstraint(['host_id'], ['host.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('host_id', 'tag')
    )
    with op.batch_alter_table('hosttag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hosttag_tag'), ['tag'], unique=False)

    op.create_table('storagepooltag',
    sa.Column('pool_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.ForeignKeyConstraint(['pool_id'], ['storagepool.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('pool_id', 'tag')
    )
    with op.batch_alter_table('storagepooltag', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_storagepooltag_tag'), ['tag'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('storagepooltag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storagepooltag_tag'))

    op.drop_table('storagepooltag')
    with op.batch_alter_table('hosttag', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hosttag_tag'))

    op.drop_table('hosttag')
    with op.batch_alter_table('storagepool', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_storagepool_zone_id'))
        batch_op.drop_index(batch_op.f('ix_storagepool_pod_id'))
        batch_op.drop_index(batch_op.f('ix_storagepool_cluster_id'))

    op.drop_table('storagepool')
    with op.batch_alter_table('host', schema=None) as batch_op:
        batch_op.drop_index('ix_host_zone_status')
        batch_op.drop_index(batch_op.f('ix_host_pod_id'))
        batch_op.drop_index(batch_op.f('ix_host_cluster_id'))

    op.drop_table('host')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_event_type'))
        batch_op.drop_index(batch_op.f('ix_event_created'))

    op.drop_table('event')
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_account_id'))

    op.drop_table('user')
    with op.batch_alter_table('cluster', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cluster_zone_id'))
        batch_op.drop_index(batch_op.f('ix_cluster_pod_id'))

    op.drop_table('cluster')
    with op.batch_alter_table('pod', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pod_zone_id'))

    op.drop_table('pod')
    with op.batch_alter_table('imagestore', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_imagestore_zone_id'))

    op.drop_table('imagestore')
    op.drop_table('configurationoverride')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_domain_id'))

    op.drop_table('account')
    op.drop_table('zone')
    op.drop_table('serviceoffering')
    op.drop_table('domain')
    op.drop_table('diskoffering')
    op.drop_table('configuration')
