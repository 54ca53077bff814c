"""Health (`masar.v1.HealthService`, port 50056): hospital care units, medical
referrals, and the clinical care health staff record (PEP, emergency
contraception, forensic examination, certificate and ITT, follow-up visits)."""
