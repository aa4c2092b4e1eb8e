"""Learner models arrive with feature extraction and training."""
