"""Masar's sector services, one package each (same shape)."""
