"""Masar's benchmarks (`make bench`, `python -m bench`): measured, never a CI gate.

- `throughput`: journeys through the real stack against a bare Temporal workflow
  with as many activities and updates, on the same dev server, in the same run;
- `scale`: many open journeys parked on deadlines (memory, Temporal database
  size), then a burst of deadlines falling due together (escalation lag);
- `capacity`: placements and enrolments per second through gRPC, on SQLite and
  on PostgreSQL.

Each prints its figures with the machine's core count and writes
`bench/results/<name>.json`.
"""
