"""python manage.py seed_demo: a demo project, users and clips for a first look (idempotent)."""

from __future__ import annotations

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from labelling.models import ClipSource, Membership, Project, Role
from labelling.services import ingest, taxonomy
from labelling.taxonomy_schema import PRESET_SLUGS

DEMO_AUDIO = Path(settings.BASE_DIR) / "demo" / "emodb"
DEMO_USERS = [
    ("admin", Role.ADMIN, True),
    ("mlengineer", Role.ML_ENGINEER, False),
    ("reviewer", Role.REVIEWER, False),
    ("annotator1", Role.ANNOTATOR, False),
    ("annotator2", Role.ANNOTATOR, False),
]


class Command(BaseCommand):
    help = "Create the demo project (Willcox wheel, EmoDB demo clips) and demo users."

    def handle(self, *args, **options) -> None:
        for slug in PRESET_SLUGS:
            taxonomy.install_preset(slug)
        with transaction.atomic():
            project, created = Project.objects.get_or_create(
                slug="demo",
                defaults={
                    "name": "Demo: acted German speech",
                    "description": "EmoDB demo clips: ten actors read neutral sentences in seven "
                    "emotions in an anechoic studio. Label the emotion you hear in the voice, "
                    "not the words.",
                    "guidelines": "Label at the finest ring you are sure of; a core feeling "
                    "alone is a valid label. Mark unsure when you hesitate.",
                    "annotators_per_clip": 2,
                },
            )
            if project.taxonomy_version_id is None:
                taxonomy.assign_to_project(project, taxonomy.install_preset("willcox"))
            logins = self._users(project)
        if not project.clips.exists():
            batch = ingest.stage_folder(
                project,
                DEMO_AUDIO / "wav",
                manifest_path=DEMO_AUDIO / "labels.csv",
                source=ClipSource.CORPUS,
            )
            for item_id in ingest.pending_item_ids(batch):
                ingest.process_item(item_id)
            ingest.finish_batch_if_complete(batch.pk)
        self.stdout.write(
            f"Demo project '{project.name}' ({'created' if created else 'exists'}): "
            f"{project.clips.count()} clips, taxonomy {project.taxonomy_version}."
        )
        self.stdout.write("Demo logins (also in var/demo-credentials.txt):")
        for line in logins:
            self.stdout.write(f"  {line}")

    def _users(self, project: Project) -> list[str]:
        """Create demo users once with random passwords, kept in a private file for reruns."""
        store = Path(settings.DATA_DIR) / "demo-credentials.txt"
        known = (
            dict(line.split(" ", 1) for line in store.read_text().splitlines() if " " in line)
            if store.exists()
            else {}
        )
        User = get_user_model()
        lines = []
        for username, role, is_admin in DEMO_USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                password = secrets.token_urlsafe(9)
                user = User.objects.create_user(
                    username=username, password=password, is_staff=is_admin, is_superuser=is_admin
                )
                known[username] = password
            Membership.objects.get_or_create(user=user, project=project, defaults={"role": role})
            password = known.get(username, "(set before this demo; unchanged)")
            lines.append(f"{username} {password}")
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text("\n".join(f"{u} {p}" for u, p in known.items()) + "\n")
        store.chmod(0o600)
        return [f"{line.split(' ', 1)[0]:<11} password: {line.split(' ', 1)[1]}" for line in lines]
