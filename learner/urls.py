"""Learner API routes (prediction, model versions, training), mounted under /api/."""

urlpatterns: list = []
