"""Learner API under /api/: prediction, model versions, training runs, learner settings.

Objects of projects the user is not a member of are 404 (querysets go through
labelling.services.access); writes check the member's role. Each endpoint validates with a
serializer and calls one service.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labelling import audio
from labelling.models import Clip, Project, Role
from labelling.services import access
from learner import conf
from learner import serializers as s
from learner.features import ExtractorUnavailable, describe
from learner.models import ModelVersion, TrainingRun
from learner.services import predict, training
from learner.tasks import start_training


def _project(request: Request, slug: str, minimum: Role) -> Project:
    project = get_object_or_404(access.projects_for(request.user), slug=slug)
    if not access.has_role(request.user, project, minimum):
        raise PermissionDenied(f"This needs the {Role(minimum).label} role in {project.slug}.")
    return project


def _prediction_response(call) -> Response:
    try:
        prediction = call()
    except predict.NoActiveModel as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    except (predict.FeatureMismatch, ExtractorUnavailable) as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response(prediction.as_json())


class PredictView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request=s.PredictRequestSerializer,
        responses={200: s.PredictionSerializer},
        description="The active model's probability for every node of the wheel at each level, "
        "for an uploaded audio file. 409 when the project has no model yet.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.ANNOTATOR)
        body = s.PredictRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            with path.open("wb") as fh:
                for chunk in upload.chunks():
                    fh.write(chunk)
            try:
                samples, info = audio.decode(
                    path,
                    max_bytes=settings.EMOLOOP_MAX_FILE_BYTES,
                    max_seconds=settings.EMOLOOP_MAX_CLIP_SECONDS,
                )
            except audio.AudioRejected as exc:
                raise ValidationError({"file": [exc.message]}) from exc
        wave = audio.to_mono_16k(samples, info.sample_rate)
        speaker = body.validated_data.get("speaker_id", "")
        return _prediction_response(
            lambda: predict.predict_waveform(project, wave, speaker_id=speaker)
        )


class ClipPredictionView(APIView):
    @extend_schema(
        responses={200: s.PredictionSerializer},
        description="The active model's prediction for a clip of the project (assisted mode).",
    )
    def get(self, request: Request, pk: int) -> Response:
        clip = get_object_or_404(
            Clip.objects.filter(project__in=access.projects_for(request.user)).select_related(
                "project"
            ),
            pk=pk,
        )
        return _prediction_response(lambda: predict.predict_clips(clip.project, [clip])[0])


class ModelVersionListView(APIView):
    @extend_schema(responses={200: s.ModelVersionSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.REVIEWER)
        versions = ModelVersion.objects.filter(project=project).order_by("-number")
        return Response(s.ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailView(APIView):
    @extend_schema(responses={200: s.ModelVersionSerializer})
    def get(self, request: Request, slug: str, number: int) -> Response:
        project = _project(request, slug, Role.REVIEWER)
        version = get_object_or_404(ModelVersion, project=project, number=number)
        return Response(s.ModelVersionSerializer(version).data)


class ActivateModelView(APIView):
    @extend_schema(
        request=None,
        responses={200: s.ModelVersionSerializer},
        description="Make this version the active one again (a rollback), once its artifact "
        "loads (ML engineer).",
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        project = _project(request, slug, Role.ML_ENGINEER)
        version = get_object_or_404(ModelVersion, project=project, number=number)
        try:
            training.activate(version)
        except training.ArtifactError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(s.ModelVersionSerializer(version).data)


class TrainingRunListView(APIView):
    @extend_schema(responses={200: s.TrainingRunSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.REVIEWER)
        runs = (
            TrainingRun.objects.filter(project=project)
            .select_related("requested_by", "model_version")
            .order_by("-created_at")[:50]
        )
        return Response(s.TrainingRunSerializer(runs, many=True).data)

    @extend_schema(
        request=s.StartTrainingSerializer,
        responses={202: s.StartTrainingResponseSerializer},
        description="Start a training (ML engineer). At most one training per project is "
        "queued or running: a second request gets that run back with created=false.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.ML_ENGINEER)
        body = s.StartTrainingSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run, created = start_training(
            project,
            trigger=TrainingRun.Trigger.MANUAL,
            user=request.user,
            feature_set=body.validated_data.get("feature_set"),
        )
        data = {"created": created, "run": s.TrainingRunSerializer(run).data}
        return Response(data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailView(APIView):
    @extend_schema(responses={200: s.TrainingRunSerializer})
    def get(self, request: Request, slug: str, run_id: int) -> Response:
        project = _project(request, slug, Role.REVIEWER)
        run = get_object_or_404(TrainingRun, project=project, pk=run_id)
        return Response(s.TrainingRunSerializer(run).data)


class LearnerSettingsView(APIView):
    @extend_schema(responses={200: s.LearnerSettingsSerializer})
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.REVIEWER)
        return Response(s.LearnerSettingsSerializer(training.current_settings(project)).data)

    @extend_schema(
        request=s.LearnerSettingsSerializer, responses={200: s.LearnerSettingsSerializer}
    )
    def patch(self, request: Request, slug: str) -> Response:
        project = _project(request, slug, Role.ML_ENGINEER)
        body = s.LearnerSettingsSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        row = training.update_settings(project, body.validated_data)
        return Response(s.LearnerSettingsSerializer(row).data)


class FeatureSetListView(APIView):
    @extend_schema(
        responses={200: s.FeatureSetSerializer(many=True)},
        description="Feature sets, whether each can run on this server, and why not.",
    )
    def get(self, request: Request) -> Response:
        return Response(describe(conf.extractor_options()))
