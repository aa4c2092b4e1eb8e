"""Dataset versions: the ML engineer's deliverable (issue 10, in progress).

`exports.core` holds the framework-free parts (no Django): label aggregation, agreement,
speaker-disjoint splits that stay stable across versions, and deterministic archives with
SHA-256 manifests. The Django app (models, tasks, API, formats) builds on them.
"""
