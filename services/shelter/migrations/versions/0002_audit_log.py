"""Shelter, revision 0002: the append-only, hash-chained audit log every sector has."""

from masar.referral.migrations import downgrade_audit_log, upgrade_audit_log

revision = "0002"
down_revision = "0001"
upgrade = upgrade_audit_log
downgrade = downgrade_audit_log
