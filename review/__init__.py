"""Quality and review for reviewers: annotator figures, agreement, adjudication (issue 11)."""
