"""`manage.py ops_status [--measure-storage]`: the readiness checks and the Celery picture,
as JSON (what /readyz and /ops/ show), for a shell without a browser. Exit status 1 when a
readiness check fails."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops.services import celery_state, health, storage


class Command(BaseCommand):
    help = "Print readiness checks, workers, queue lengths and storage usage as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--measure-storage", action="store_true", help="measure default_storage now (slow)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checks = health.run_checks()
        report: dict[str, Any] = {
            "checks": {c.name: {"ok": c.ok, "error": c.error, "ms": c.ms} for c in checks}
        }
        try:
            report["workers"] = sorted(celery_state.workers())
            report["queues"] = celery_state.queue_lengths()
        except Exception as exc:
            report["celery_error"] = f"{type(exc).__name__}: {exc}"
        report["storage"] = (
            storage.measure() if options["measure_storage"] else storage.last_measurement()
        )
        self.stdout.write(json.dumps(report, indent=2, default=str))
        if not all(c.ok for c in checks):
            raise CommandError("not ready: " + ", ".join(c.name for c in checks if not c.ok))
