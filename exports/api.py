"""Dataset version API: create (ML engineer), list, detail, files, one file, the zip.

Every view is project-scoped (labelling.scoping): non-members get 404, annotators and
reviewers 403 (issue 10: an annotator cannot create or download a dataset; corpus labels
and the pseudonymised raters are ML-engineer material, so reviewers are kept out too).
Files are served only when the version is ready (409 otherwise) and only by a name listed
in its SHA256SUMS, so no path from the URL ever reaches storage unchecked. Files are read
through Django's storage API (local folder or S3, exports.services.versions); formats other
than native are converted by a task and answered 202 until stored (services.conversions).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emoloop.api_base import Conflict, PassthroughRenderer
from exports import serializers as s
from exports.core.archive import MANIFEST, iter_zip_entries
from exports.formats import FORMATS
from exports.models import DatasetConversion, DatasetVersion
from exports.services import conversions, diff, versions
from exports.tasks import request_conversion, start_version
from labelling.models import Role
from labelling.scoping import ProjectScopedMixin, signed_in


def _zip_of(version: DatasetVersion) -> StreamingHttpResponse:
    """A ready version as a streamed, deterministic zip, read from storage file by file."""
    entries = versions.zip_entries(version)
    response = StreamingHttpResponse(iter_zip_entries(entries), content_type="application/zip")
    name = PurePosixPath(version.folder).name
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response


class _DatasetView(ProjectScopedMixin, APIView):
    project_roles = Role.ML_ENGINEER

    def version(self, number: int) -> DatasetVersion:
        return get_object_or_404(DatasetVersion, project=self.project, number=number)

    def ready(self, version: DatasetVersion) -> DatasetVersion:
        try:
            return versions.ensure_ready(version)
        except versions.NotReady as exc:
            raise Conflict(str(exc), code="not_ready") from exc


class DatasetListView(_DatasetView):
    @extend_schema(responses={200: s.DatasetVersionSerializer(many=True)})
    def get(self, request: Request, slug: str) -> Response:
        found = (
            DatasetVersion.objects.filter(project=self.project)
            .select_related("created_by")
            .order_by("-number")[:100]
        )
        return Response(s.DatasetVersionSerializer(found, many=True).data)

    @extend_schema(
        request=s.CreateDatasetSerializer,
        responses={201: s.DatasetVersionSerializer},
        description="Create a dataset version (ML engineer): it is queued and built by a "
        "task; poll the detail for progress. 503 broker_unavailable when the task queue is "
        "down (the version is saved and stays queued).",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = s.CreateDatasetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            version = start_version(
                self.project,
                user=signed_in(request.user),
                seed=body.validated_data["seed"],
                import_batch=body.validated_data.get("import_batch"),
                audio=body.validated_data["audio"],
            )
        except ValueError as exc:
            raise ValidationError({"import_batch": [str(exc)]}) from exc
        return Response(s.DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(_DatasetView):
    @extend_schema(responses={200: s.DatasetVersionSerializer})
    def get(self, request: Request, slug: str, number: int) -> Response:
        return Response(s.DatasetVersionSerializer(self.version(number)).data)


class DatasetFilesView(_DatasetView):
    @extend_schema(
        responses={200: s.DatasetFileSerializer(many=True)},
        description="Every file of a ready version with its size and SHA-256 (409 otherwise).",
    )
    def get(self, request: Request, slug: str, number: int) -> Response:
        version = self.ready(self.version(number))
        listed = versions.manifest(version)
        rows = [
            {"path": name, "size": versions.file_size(version, name), "sha256": digest}
            for name, digest in sorted(listed.items())
        ]
        return Response(s.DatasetFileSerializer(rows, many=True).data)


class DatasetFileView(_DatasetView):
    renderer_classes = [PassthroughRenderer]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, slug: str, number: int, path: str) -> FileResponse:
        """One file of a ready version, by its name in SHA256SUMS (or SHA256SUMS itself)."""
        version = self.ready(self.version(number))
        if path != MANIFEST and path not in versions.manifest(version):
            raise NotFound("No such file in this dataset version.")
        return FileResponse(
            versions.open_file(version, path), as_attachment=True,
            filename=PurePosixPath(path).name,
        )  # fmt: skip


class DatasetZipView(_DatasetView):
    renderer_classes = [PassthroughRenderer]

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request: Request, slug: str, number: int) -> StreamingHttpResponse:
        """The whole ready version as one zip, streamed (entries sorted, fixed dates)."""
        return _zip_of(self.ready(self.version(number)))


class DatasetFormatZipView(_DatasetView):
    renderer_classes = [PassthroughRenderer]

    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            (202, "application/json"): s.DatasetConversionSerializer,
        },
        description="The ready version in another layout, as one zip: `native`, `hf` "
        "(Hugging Face audiofolder), `audformat` or `labelstudio` (docs/datasets.md, "
        "Formats). A format other than native is converted once by a background task and "
        "stored: until its zip is there this answers 202 with the conversion's status and "
        "progress (starting it if needed, or again if it failed; poll again), then 200 with "
        "the zip. `?status`: always the conversion's status as JSON (200), never the zip; "
        "with `retry=0` a failed conversion is not started again (the datasets page polls "
        "so). The same version always gives the same bytes. 404 for an unknown format.",
    )
    def get(self, request: Request, slug: str, number: int, fmt: str) -> HttpResponseBase:
        version = self.ready(self.version(number))
        if fmt not in FORMATS:
            raise NotFound(f"No format {fmt!r}; choose one of {', '.join(sorted(FORMATS))}.")
        if fmt == "native":
            if "status" in request.query_params:  # never converted: always ready
                url = request.build_absolute_uri(request.path)
                return JsonResponse(conversions.native_description(version, url))
            return _zip_of(version)
        retry = request.query_params.get("retry", "1") in {"1", "true"}
        conversion = request_conversion(version, fmt, retry_failed=retry)
        if "status" in request.query_params:  # the datasets page polls this
            return _conversion_answer(request, conversion, status.HTTP_200_OK)
        if conversion.status != DatasetConversion.Status.READY:
            return _conversion_answer(request, conversion, status.HTTP_202_ACCEPTED)
        response = FileResponse(
            default_storage.open(conversion.archive, "rb"), as_attachment=True,
            filename=PurePosixPath(conversion.archive).name, content_type="application/zip",
        )  # fmt: skip
        return response


def _conversion_answer(request: Request, conversion: DatasetConversion, code: int) -> JsonResponse:
    url = request.build_absolute_uri(request.path)  # the zip, without ?status
    response = JsonResponse(conversions.description(conversion, url), status=code)
    if code == status.HTTP_202_ACCEPTED:
        response["Retry-After"] = "1"
    return response


class DatasetDiffView(_DatasetView):
    @extend_schema(
        parameters=[s.DiffQuerySerializer],
        responses={200: s.DatasetDiffSerializer},
        description="What changed from version <number> to version <other>: clips added and "
        "removed, majority labels changed per ring (from/to), split moves of groups in both "
        "(none for the builder's own versions). Lists are sorted and capped at `limit` "
        "entries (default 1000, at most 10000); `summary` has the full counts. 409 "
        "not_ready unless both are ready.",
    )
    def get(self, request: Request, slug: str, number: int, other: int) -> Response:
        query = s.DiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        old, new = self.version(number), self.version(other)
        try:
            found = diff.diff(old, new, limit=query.validated_data["limit"])
        except versions.NotReady as exc:
            raise Conflict(str(exc), code="not_ready") from exc
        return Response(found)
