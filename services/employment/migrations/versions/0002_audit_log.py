"""Employment: the append-only, hash-chained audit log (masar.platform.audit): referrals
received, staff decisions and milestones, closures, purges and reads of the
sector's case files.

Revision ID: 0002
Revises: 0001
"""

from masar.referral.migrations import downgrade_audit_log, upgrade_audit_log

revision = "0002"
down_revision = "0001"
upgrade = upgrade_audit_log
downgrade = downgrade_audit_log
