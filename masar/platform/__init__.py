"""Infrastructure with no domain words: settings, database and unit of work, gRPC
bootstrap and error mapping, identity and tokens, crypto and the payload codec,
outbox, audit log, telemetry and logging. Imports only the journey contract."""
