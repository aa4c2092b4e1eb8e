from django.apps import AppConfig


class LearnerConfig(AppConfig):
    """Features, training and ranking (filled in by the learner and active-learning work)."""

    name = "learner"
    verbose_name = "Learner"
