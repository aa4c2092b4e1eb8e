"""URLs for tests/test_auth_throttle.py: the guarded doors at their production paths.

Ahead of emoloop.urls' own patterns (the first match wins), plus two small API views that
carry the throttles, so the tests run before and after emoloop/urls.py is wired.
"""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emoloop import auth
from emoloop.urls import urlpatterns as production_urlpatterns


class PredictLike(APIView):
    throttle_classes = [auth.PredictThrottle]

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


class AnonymousLike(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [auth.AnonThrottle]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


urlpatterns = [
    path("accounts/login/", auth.ThrottledLoginView.as_view(), name="login"),
    path("api/auth/token/", auth.ThrottledTokenView.as_view(), name="api-token"),
    path("admin/login/", auth.admin_login, name="admin-login"),
    path("test-throttles/predict", PredictLike.as_view(), name="test-predict-throttle"),
    path("test-throttles/anonymous", AnonymousLike.as_view(), name="test-anon-throttle"),
    *production_urlpatterns,
]
