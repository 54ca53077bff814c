"""Psychosocial (`masar.v1.PsychosocialService`, port 50057): counselling and
social support by associations — referrals, sessions (date and attendance
only) and the support plan reviewed at follow-ups."""
