"""Interop in (ML engineer): a labelled corpus, an external model's predictions and a Label
Studio export, uploaded into a project (labelling/services/interop/).

- POST /api/projects/<slug>/corpus-imports/: `audio` (a .zip/.tar(.gz) of the audio),
  `labels` (the labels CSV), `preset`, optional `mapping` (JSON). The checks run in the
  request; the audio is ingested by workers (poll the returned batch); each new clip gets
  its corpus annotation as it is created.
- POST /api/projects/<slug>/predictions/: `file` (CSV or JSON lines), `model`,
  `model_version`, optional `mapping` or `preset`: weak labels.
- GET /api/projects/<slug>/predictions/: the weak-label sources (read-only): per model, its
  versions, clips, weight, enabled/force, agreement with the human majority on the clips
  both labelled, whether it is flagged for disagreeing and whether it trains the model
  (labelling/services/interop/sources.py).
- PATCH /api/projects/<slug>/predictions/<model>/: a source's `weight` (0..1), `enabled`,
  `force` (ML engineer; unknown fields 400; a source may be set up before its predictions
  come; audited as `weak_source.changed`); answers the source as GET lists it.
- POST /api/projects/<slug>/labelstudio-imports/: `file` (the export), optional `mapping`:
  annotations on clips already in the project (new audio goes through the CLI's
  --audio-dir).

Annotators and reviewers get 403, non-members 404. Faults answer 400 with every problem
(`errors.problems`) and write nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emoloop.api_base import StrictSerializer
from labelling import serializers as s
from labelling.models import Project, Role
from labelling.models_interop import WeakLabelSource
from labelling.scoping import ProjectScopedMixin, signed_in
from labelling.services.interop import PRESETS, InteropError, load_mapping
from labelling.services.interop.corpus import apply_plan, audio_root, plan_corpus
from labelling.services.interop.labelstudio import apply_labelstudio, plan_labelstudio
from labelling.services.interop.predictions import apply_predictions, plan_predictions
from labelling.services.interop.sources import set_source, source_reports, thresholds
from labelling.tasks import dispatch_batch


class CorpusImportSerializer(StrictSerializer):
    audio = serializers.FileField(help_text="A .zip or .tar(.gz) of the corpus's audio.")
    labels = serializers.FileField(help_text="The labels CSV (file, emotion, speaker, …).")
    preset = serializers.ChoiceField(choices=PRESETS)
    mapping = serializers.FileField(required=False, help_text="JSON {label: node key or null}.")


class PredictionImportSerializer(StrictSerializer):
    file = serializers.FileField(help_text="CSV or JSON lines of probabilities per clip.")
    model = serializers.CharField(max_length=120)
    model_version = serializers.CharField(max_length=80)
    mapping = serializers.FileField(required=False)
    preset = serializers.ChoiceField(choices=PRESETS, required=False)


class WeakSourceSerializer(serializers.Serializer):
    model_name = serializers.CharField()
    versions = serializers.ListField(child=serializers.CharField())
    clips = serializers.IntegerField()
    weight = serializers.FloatField()
    enabled = serializers.BooleanField()
    force = serializers.BooleanField()
    overlap = serializers.IntegerField(help_text="Clips with a prediction and a human majority.")
    agreed = serializers.IntegerField()
    agreement = serializers.FloatField(allow_null=True)
    flagged = serializers.BooleanField(help_text="Disagrees with the humans beyond the threshold.")
    used_for_training = serializers.BooleanField()


MODEL_NAME_MAX: int = WeakLabelSource._meta.get_field("model_name").max_length or 120


class WeakSourceChangeSerializer(StrictSerializer):
    weight = serializers.FloatField(min_value=0.0, max_value=1.0, required=False,
                                    help_text="A human label weighs 1; 0: not used.")  # fmt: skip
    enabled = serializers.BooleanField(required=False)
    force = serializers.BooleanField(
        required=False, help_text="Train on it even while it is flagged for disagreeing."
    )

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise ValidationError("Give at least one of weight, enabled, force.")
        return attrs


class LabelStudioImportSerializer(StrictSerializer):
    file = serializers.FileField(help_text="A Label Studio JSON export (a list of tasks).")
    mapping = serializers.FileField(required=False)


def _save(upload, folder: Path, name: str) -> Path:
    suffix = "".join(Path(upload.name or "").suffixes[-2:]).lower()[:12]
    path = folder / f"{name}{suffix}"
    with path.open("wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    return path


def _refused(exc: InteropError) -> ValidationError:
    return ValidationError({"problems": exc.problems})


class _InteropView(ProjectScopedMixin, APIView):
    project_roles = Role.ML_ENGINEER
    parser_classes = [MultiPartParser, FormParser]

    def _project(self) -> Project:
        return Project.objects.select_related("taxonomy_version__taxonomy").get(pk=self.project.pk)

    @staticmethod
    def _tmp() -> tempfile.TemporaryDirectory:
        """The request's uploads, on this host only: the import is planned and applied in
        this request, and what workers need is staged through storage (ingest.stage_folder)."""
        return tempfile.TemporaryDirectory(prefix="emoloop-interop-")


class CorpusImportView(_InteropView):
    @extend_schema(
        request=CorpusImportSerializer,
        responses={
            202: inline_serializer(
                "CorpusImportResult",
                {
                    "labels": serializers.IntegerField(),
                    "dropped": serializers.IntegerField(),
                    "existing_clips": serializers.IntegerField(),
                    "new_files": serializers.IntegerField(),
                    "annotations_written": serializers.IntegerField(),
                    "batch": s.ImportBatchSerializer(allow_null=True),
                },
            )
        },
        description="Import a labelled corpus (ML engineer): checked here, ingested by workers.",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = CorpusImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = self._project()
        with self._tmp() as tmp:
            folder = Path(tmp)
            audio = _save(data["audio"], folder, "audio")
            labels = _save(data["labels"], folder, "labels")
            mapping_path = _save(data["mapping"], folder, "mapping") if "mapping" in data else None
            try:
                mapping = load_mapping(project, preset=data["preset"], mapping_path=mapping_path)
                with audio_root(audio) as root:
                    plan = plan_corpus(project, root, labels, mapping, origin=data["audio"].name)
                    result = apply_plan(plan, signed_in(request.user))
            except InteropError as exc:
                raise _refused(exc) from exc
        if result.batch is not None:
            dispatch_batch(result.batch)
        return Response(
            {
                "labels": result.labels,
                "dropped": result.dropped,
                "existing_clips": result.existing_clips,
                "new_files": result.new_files,
                "annotations_written": result.annotations_written,
                "batch": s.ImportBatchSerializer(result.batch).data if result.batch else None,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class PredictionImportView(_InteropView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "WeakLabelSources",
                {
                    "sources": WeakSourceSerializer(many=True),
                    "min_agreement": serializers.FloatField(),
                    "min_overlap": serializers.IntegerField(),
                },
            )
        },
        description="The weak-label sources, their agreement with the humans and flags "
        "(ML engineer; read-only).",
    )
    def get(self, request: Request, slug: str) -> Response:
        min_agreement, min_overlap = thresholds()
        return Response(
            {
                "sources": [r.as_dict() for r in source_reports(self._project())],
                "min_agreement": min_agreement,
                "min_overlap": min_overlap,
            }
        )

    @extend_schema(
        request=PredictionImportSerializer,
        responses={
            201: inline_serializer(
                "PredictionImportResult",
                {
                    "rows": serializers.IntegerField(),
                    "created": serializers.IntegerField(),
                    "unchanged": serializers.IntegerField(),
                },
            )
        },
        description="Import an external model's predictions as weak labels (ML engineer).",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = PredictionImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = self._project()
        with self._tmp() as tmp:
            folder = Path(tmp)
            upload = data["file"]
            path = folder / Path(upload.name or "predictions.csv").name
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            mapping_path = _save(data["mapping"], folder, "mapping") if "mapping" in data else None
            try:
                mapping = load_mapping(
                    project, preset=data.get("preset"), mapping_path=mapping_path
                )
                planned = plan_predictions(
                    project, path, mapping, data["model"], data["model_version"]
                )
                result = apply_predictions(project, planned, signed_in(request.user))
            except InteropError as exc:
                raise _refused(exc) from exc
        return Response(
            {"rows": result.rows, "created": result.created, "unchanged": result.unchanged},
            status=status.HTTP_201_CREATED,
        )


class WeakSourceView(_InteropView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        request=WeakSourceChangeSerializer,
        responses={200: WeakSourceSerializer},
        description="Set a weak-label source's weight, enabled and force (ML engineer).",
    )
    def patch(self, request: Request, slug: str, model_name: str) -> Response:
        body = WeakSourceChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if len(model_name) > MODEL_NAME_MAX or "\x00" in model_name:
            raise ValidationError(
                {"model": f"a model name has at most {MODEL_NAME_MAX} characters"}
            )
        project = self._project()
        set_source(project, model_name, **body.validated_data)
        report = next(r for r in source_reports(project) if r.model_name == model_name)
        return Response(report.as_dict())


class LabelStudioImportView(_InteropView):
    @extend_schema(
        request=LabelStudioImportSerializer,
        responses={
            201: inline_serializer(
                "LabelStudioImportResult",
                {
                    "tasks": serializers.IntegerField(),
                    "labels": serializers.IntegerField(),
                    "annotations_written": serializers.IntegerField(),
                },
            )
        },
        description="Import a Label Studio export onto the project's clips (ML engineer).",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = LabelStudioImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        project = self._project()
        with self._tmp() as tmp:
            folder = Path(tmp)
            path = _save(data["file"], folder, "export")
            mapping_path = _save(data["mapping"], folder, "mapping") if "mapping" in data else None
            try:
                mapping = load_mapping(project, mapping_path=mapping_path)
                plan = plan_labelstudio(project, path, mapping)
                result = apply_labelstudio(project, mapping, *plan, user=signed_in(request.user))
            except InteropError as exc:
                raise _refused(exc) from exc
        return Response(
            {
                "tasks": result.tasks,
                "labels": result.labels,
                "annotations_written": result.annotations_written,
            },
            status=status.HTTP_201_CREATED,
        )
