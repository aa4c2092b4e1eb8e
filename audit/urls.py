"""The audit log's page and API (included by ops.urls, which emoloop.urls mounts at /)."""

from django.urls import URLPattern, path

from audit import api, views

urlpatterns: list[URLPattern] = [
    path("audit/", views.audit_log, name="audit-log"),
    path("api/audit/", api.AuditEventList.as_view(), name="audit-api"),
]
