"""Masar — referral-and-care platform for survivors of gender-based violence.

This package is the shared kernel: settings, databases, gRPC bootstrap,
Temporal client, telemetry, the journey contract and the CLI. It imports
neither services nor workflows.
"""

__version__ = "0.1.0"
