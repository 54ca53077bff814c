"""Shelter (`masar.v1.ShelterService`, port 50052): shelters and their beds,
placement referrals, check-in and check-out."""
