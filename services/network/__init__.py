"""The referral network (`masar.v1.NetworkService`, port 50055): organisations,
staff accounts, and signing in for Masar's tokens."""
