"""Masar's Temporal workflows: the survivor journey, the referral handshake,
the SLA policy and its escalation ladder, and the journey worker
(`python -m workflows`).

Workflows import the kernel's journey contract (masar.contract), never the
services: the sectors' activities are called by name on their task queues.
"""
