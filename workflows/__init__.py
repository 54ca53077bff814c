"""Masar's Temporal workflows: the survivor journey (journey), the case file
that decides for it (casefile) and the rule objects it drives — one referral
track per sector (tracks), the clinical windows (clinical) — the owed side
effects and the timeline (lanes), update validation (validation), the status
view (view), the SLA policy and its escalation ladder (policy, ladder), and the
journey worker (`python -m workflows`).

Workflows import the kernel's journey contract (masar.contract), never the
services: the sectors' activities are called by their written-out names
(masar.contract.SECTOR_ACTIVITIES) on their task queues.
"""
