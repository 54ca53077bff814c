"""Employment (`masar.v1.EmploymentService`, port 50054): training programmes
and their seats, enrolment referrals, training outcomes and job placements."""
