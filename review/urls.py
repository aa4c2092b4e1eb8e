"""Quality and review pages, and their API under /api/projects/<slug>/quality|review/."""

from django.urls import path

from review import api, views

urlpatterns = [
    path("projects/<slug:slug>/quality/", views.annotators, name="review-annotators"),
    path(
        "projects/<slug:slug>/quality/annotators/<int:user_id>/",
        views.annotator,
        name="review-annotator",
    ),
    path("projects/<slug:slug>/quality/agreement/", views.agreement, name="review-agreement"),
    path("projects/<slug:slug>/review/", views.review_queue, name="review-queue"),
    path(
        "projects/<slug:slug>/review/clips/<int:clip_id>/",
        views.review_clip,
        name="review-clip",
    ),
    path(
        "api/projects/<slug:slug>/quality/",
        api.QualityView.as_view(),
        name="api-quality",
    ),
    path(
        "api/projects/<slug:slug>/quality/annotators/<int:user_id>/",
        api.AnnotatorQualityView.as_view(),
        name="api-quality-annotator",
    ),
    path(
        "api/projects/<slug:slug>/quality/agreement/",
        api.AgreementView.as_view(),
        name="api-quality-agreement",
    ),
    path("api/projects/<slug:slug>/review/", api.ReviewQueueView.as_view(), name="api-review"),
    path(
        "api/projects/<slug:slug>/review/clips/<int:clip_id>/",
        api.ReviewClipView.as_view(),
        name="api-review-clip",
    ),
    path(
        "api/projects/<slug:slug>/review/adjudications/",
        api.AdjudicationListView.as_view(),
        name="api-review-adjudications",
    ),
]
