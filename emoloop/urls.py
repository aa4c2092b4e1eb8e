from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from emoloop import auth
from exports import views as export_views
from labelling import views

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/label/", views.label, name="label"),
    path("projects/<slug:slug>/datasets/", export_views.datasets, name="datasets"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("healthz", views.healthz, name="healthz"),
    path("accounts/login/", auth.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Ahead of admin.site.urls: the admin's login page behind the same login guard.
    path("admin/login/", auth.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/auth/token/", auth.ThrottledTokenView.as_view(), name="api-token"),
    path(
        "api/schema/",
        SpectacularAPIView.as_view(throttle_classes=[auth.AnonThrottle]),
        name="schema",
    ),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("labelling.urls")),
    path("api/", include("learner.urls")),
    path("api/", include("exports.urls")),
    path("", include("ops.urls")),
    path("", include("review.urls")),
    path("", include("console.urls")),
]
