"""The audit log has no background work: events are written by the services, inside their
transactions, and never pruned by the application (append-only). This module exists so the
app-layers contract (.importlinter) holds for `audit` like for every app."""
