"""Learner API under /api/: prediction, model versions, training runs, learner settings.

Access goes through the project-scoped layer (labelling.scoping; contract in
docs/security.md): model outputs are for reviewers and above — an annotator sees a model's
suggestion only through the queue, in an assisted project, on a clip leased to them and
never on a gold clip. Each endpoint validates with a serializer and calls one service.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emoloop.api_base import Conflict, ServiceUnavailable
from emoloop.auth import PredictThrottle
from labelling import audio
from labelling.models import Clip, Role
from labelling.scoping import ProjectScopedMixin, RoleRequired, require_role, signed_in
from labelling.services import access
from learner import conf
from learner import serializers as s
from learner.features import ExtractorUnavailable, describe
from learner.models import ModelVersion, TrainingRun
from learner.services import predict, project_settings, training
from learner.tasks import start_training


def _prediction_response(call) -> Response:
    try:
        prediction = call()
    except predict.NoActiveModel as exc:
        raise Conflict(str(exc), code="no_model") from exc
    except (predict.FeatureMismatch, ExtractorUnavailable) as exc:
        raise ServiceUnavailable(str(exc), code="model_unavailable") from exc
    return Response(prediction.as_json())


class PredictView(ProjectScopedMixin, APIView):
    parser_classes = [MultiPartParser, FormParser]
    project_roles = Role.REVIEWER

    throttle_classes = [PredictThrottle]

    @extend_schema(
        request=s.PredictRequestSerializer,
        responses={200: s.PredictionSerializer},
        description="The active model's probability for every node of the wheel at each level, "
        "for an uploaded audio file (reviewer). Uploads are limited to "
        "EMOLOOP_PREDICT_MAX_BYTES and EMOLOOP_PREDICT_MAX_SECONDS and decoded as a stream; "
        "calls are throttled per user. 409 when the project has no model yet.",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = s.PredictRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        if upload.size is not None and upload.size > settings.EMOLOOP_PREDICT_MAX_BYTES:
            raise ValidationError(
                {"file": [f"The file is over the limit of {settings.EMOLOOP_PREDICT_MAX_BYTES} "
                          "bytes for prediction."]}
            )  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "upload"
            with path.open("wb") as fh:
                for chunk in upload.chunks():
                    fh.write(chunk)
            try:
                wave, _info = audio.decode_mono_16k(
                    path,
                    max_bytes=settings.EMOLOOP_PREDICT_MAX_BYTES,
                    max_seconds=settings.EMOLOOP_PREDICT_MAX_SECONDS,
                    max_samples_per_second=settings.EMOLOOP_MAX_SAMPLES_PER_SECOND,
                )
            except audio.AudioRejected as exc:
                raise ValidationError({"file": [exc.message]}) from exc
        speaker = body.validated_data.get("speaker_id", "")
        project = self.project
        return _prediction_response(
            lambda: predict.predict_waveform(project, wave, speaker_id=speaker)
        )


class ClipPredictionView(APIView):
    @extend_schema(
        responses={200: s.PredictionSerializer},
        description="The active model's prediction for a clip of the project (reviewer). An "
        "annotator gets it only in an assisted project, for a non-gold clip leased to them.",
    )
    def get(self, request: Request, pk: int) -> Response:
        clip = get_object_or_404(
            Clip.objects.filter(project__in=access.projects_for(request.user)).select_related(
                "project"
            ),
            pk=pk,
        )
        role = require_role(request.user, clip.project, Role.ANNOTATOR)
        if access.ROLE_RANK[role] < access.ROLE_RANK[Role.REVIEWER]:
            blind = not clip.project.assisted
            user = signed_in(request.user)
            if blind or hasattr(clip, "gold") or not access.holds_active_lease(user, clip):
                raise RoleRequired(
                    "Model predictions are for reviewers; annotators see a suggestion only "
                    "in assisted projects, on the clip they are labelling."
                )
        return _prediction_response(lambda: predict.predict_clips(clip.project, [clip])[0])


class ModelVersionListView(ProjectScopedMixin, APIView):
    project_roles = Role.REVIEWER

    @extend_schema(responses={200: s.ModelVersionSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        versions = (
            ModelVersion.objects.filter(project=self.project).defer("held_out").order_by("-number")
        )
        return Response(s.ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailView(ProjectScopedMixin, APIView):
    project_roles = Role.REVIEWER

    @extend_schema(responses={200: s.ModelVersionSerializer})
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = get_object_or_404(ModelVersion, project=self.project, number=number)
        return Response(s.ModelVersionSerializer(version).data)


class ActivateModelView(ProjectScopedMixin, APIView):
    project_roles = Role.ML_ENGINEER

    @extend_schema(
        request=None,
        responses={200: s.ModelVersionSerializer},
        description="Make this version the active one by hand (a rollback, or a candidate the "
        "quality gate refused), once its artifact loads (ML engineer). The audit event "
        "`model.activated` records that it was by hand and whether it overrode the gate.",
    )
    def post(self, request: Request, slug: str, number: int) -> Response:
        version = get_object_or_404(ModelVersion, project=self.project, number=number)
        try:
            training.activate(version, signed_in(request.user))
        except training.ArtifactError as exc:
            raise Conflict(str(exc), code="artifact_error") from exc
        return Response(s.ModelVersionSerializer(version).data)


class TrainingRunListView(ProjectScopedMixin, APIView):
    project_roles = {"get": Role.REVIEWER, "post": Role.ML_ENGINEER}

    @extend_schema(responses={200: s.TrainingRunSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        runs = (
            TrainingRun.objects.filter(project=self.project)
            .select_related("requested_by", "model_version")
            .order_by("-created_at")[:50]
        )
        return Response(s.TrainingRunSerializer(runs, many=True).data)

    @extend_schema(
        request=s.StartTrainingSerializer,
        responses={202: s.StartTrainingResponseSerializer},
        description="Start a training (ML engineer). At most one training per project is "
        "queued or running: a second request gets that run back with created=false. A feature "
        "set this server cannot run (the one named, or the project's setting) is a 400.",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = s.StartTrainingSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        feature_set = body.validated_data.get("feature_set")
        if feature_set is None:
            # The project's setting must be able to run here too: a run that can only fail
            # is refused now, not after a worker picked it up.
            try:
                s.check_available(project_settings.settings_for(self.project).feature_set)
            except ValidationError as exc:
                raise ValidationError({"feature_set": exc.detail}) from exc
        run, created = start_training(
            self.project,
            trigger=TrainingRun.Trigger.MANUAL,
            user=signed_in(request.user),
            feature_set=feature_set,
        )
        data = {"created": created, "run": s.TrainingRunSerializer(run).data}
        return Response(data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailView(ProjectScopedMixin, APIView):
    project_roles = Role.REVIEWER

    @extend_schema(responses={200: s.TrainingRunSerializer})
    def get(self, request: Request, slug: str, run_id: int) -> Response:
        run = get_object_or_404(TrainingRun, project=self.project, pk=run_id)
        return Response(s.TrainingRunSerializer(run).data)


class LearnerSettingsView(ProjectScopedMixin, APIView):
    project_roles = {"get": Role.REVIEWER, "patch": Role.ML_ENGINEER}

    @extend_schema(responses={200: s.LearnerSettingsSerializer})
    def get(self, request: Request, slug: str) -> Response:
        row = project_settings.settings_for(self.project)
        return Response(s.LearnerSettingsSerializer(row).data)

    @extend_schema(
        request=s.LearnerSettingsSerializer, responses={200: s.LearnerSettingsSerializer}
    )
    def patch(self, request: Request, slug: str) -> Response:
        body = s.LearnerSettingsSerializer(
            project_settings.settings_for(self.project), data=request.data, partial=True
        )
        body.is_valid(raise_exception=True)
        row = project_settings.update_settings(self.project, body.validated_data)
        return Response(s.LearnerSettingsSerializer(row).data)


class FeatureSetListView(APIView):
    @extend_schema(
        responses={200: s.FeatureSetSerializer(many=True)},
        description="Feature sets, whether each can run on this server, and why not.",
    )
    def get(self, request: Request) -> Response:
        return Response(describe(conf.extractor_options()))
