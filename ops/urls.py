"""Operations: the page, its API, /readyz, /metrics; and the audit log's routes (audit.urls), since
emoloop.urls mounts this module at the site root."""

from django.urls import URLPattern, URLResolver, include, path

from ops import api, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("ops/", views.ops_page, name="ops"),
    path("api/ops/overview/", api.OverviewView.as_view(), name="ops-overview"),
    path("api/ops/failures/", api.FailureListView.as_view(), name="ops-failures"),
    path(
        "api/ops/failures/<int:pk>/retry/", api.FailureRetryView.as_view(), name="ops-failure-retry"
    ),
    path("api/ops/storage/measure/", api.StorageMeasureView.as_view(), name="ops-storage-measure"),
    path("", include("audit.urls")),
]
