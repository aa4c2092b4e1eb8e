"""The audit log: an append-only record of who changed what (issue 11)."""
