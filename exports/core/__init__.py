"""The framework-free core of dataset exports: plain Python and numpy in, plain values out.

- `aggregation`: per-clip labels from several raters at one ring of the wheel (majority vote
  with its tie rule, soft labels, Dawid-Skene), raters and agreement per clip.
- `agreement`: Krippendorff's alpha (nominal) overall and per class, annotator vs consensus,
  gold accuracy per annotator.
- `splits`: speaker-disjoint train/dev/test splits, stratified, deterministic from a seed and
  stable as a dataset grows.
- `archive`: deterministic files: CSV/JSONL tables, SHA256SUMS, zip archives whose bytes
  depend only on their contents.
"""
