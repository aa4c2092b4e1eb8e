from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def dataset_files(project: Any) -> list[str]:
    """Every stored file of the project's dataset versions and their converted zips, so that
    deleting the project deletes them (labelling.services.storage.delete_project), on local
    and S3 storage alike."""
    from exports.models import DatasetConversion, DatasetVersion
    from exports.services.versions import stored_names

    names: list[str] = []
    for folder in DatasetVersion.objects.filter(project=project).values_list("folder", flat=True):
        if folder:
            names += stored_names(folder)
    names += (
        DatasetConversion.objects.filter(version__project=project)
        .exclude(archive="")
        .values_list("archive", flat=True)
    )
    return names


class ExportsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "exports"
    verbose_name = "Dataset versions"

    def ready(self) -> None:
        from labelling.services.storage import register_project_files

        register_project_files(dataset_files)
