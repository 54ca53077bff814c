"""Maintenance scripts (protobuf generation, console catalogs)."""
