"""`manage.py audit_log [--project SLUG] [--action A] [--limit N]`: print recent events."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from audit.models import AuditEvent
from audit.services import filtered


class Command(BaseCommand):
    help = "Print the latest audit events, newest first (one JSON object per line)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", default="")
        parser.add_argument("--actor", default="")
        parser.add_argument("--action", default="")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args: Any, **options: Any) -> None:
        events = filtered(
            AuditEvent.objects.all(),
            project=options["project"],
            actor=options["actor"],
            action=options["action"],
        )[: max(1, options["limit"])]
        for event in events:
            row = {
                "at": event.created_at.isoformat(),
                "actor": event.actor_label or None,
                "action": event.action,
                "project": event.project_label or None,
                "target": f"{event.target_type}:{event.target_id}" if event.target_type else None,
                "label": event.target_label or None,
                "details": event.details,
            }
            self.stdout.write(json.dumps(row, sort_keys=True))
