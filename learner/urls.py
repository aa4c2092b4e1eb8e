"""Learner API routes (prediction, model versions, training), mounted under /api/."""

from django.urls import path

from learner import api, api_rankings

urlpatterns = [
    path("projects/<slug:slug>/predict", api.PredictView.as_view(), name="learner-predict"),
    path("projects/<slug:slug>/models", api.ModelVersionListView.as_view(), name="learner-models"),
    path(
        "projects/<slug:slug>/models/<int:number>",
        api.ModelVersionDetailView.as_view(),
        name="learner-model",
    ),
    path(
        "projects/<slug:slug>/models/<int:number>/activate",
        api.ActivateModelView.as_view(),
        name="learner-model-activate",
    ),
    path(
        "projects/<slug:slug>/training-runs",
        api.TrainingRunListView.as_view(),
        name="learner-training-runs",
    ),
    path(
        "projects/<slug:slug>/training-runs/<int:run_id>",
        api.TrainingRunDetailView.as_view(),
        name="learner-training-run",
    ),
    path(
        "projects/<slug:slug>/learner-settings",
        api.LearnerSettingsView.as_view(),
        name="learner-settings",
    ),
    path(
        "clips/<int:pk>/prediction",
        api.ClipPredictionView.as_view(),
        name="learner-clip-prediction",
    ),
    path(
        "projects/<slug:slug>/rankings",
        api_rankings.RankingListView.as_view(),
        name="learner-rankings",
    ),
    path("learner/feature-sets", api.FeatureSetListView.as_view(), name="learner-feature-sets"),
]
