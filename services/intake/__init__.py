"""Intake (`masar.v1.IntakeService`, port 50051): registers cases, assesses
risk and needs, records consents, and starts and informs each case's journey."""
