"""Pure domain rules shared by the API and the activities (no I/O)."""
