"""The local stack: the supervisor behind `masar up` and the Temporal dev-server helpers."""
