"""Interop in: labels and predictions from outside the project (issue 10).

- ``mapping``: a corpus's or a model's label names onto the project's wheel (presets in
  labelling/corpus_presets/, or a custom JSON mapping);
- ``raters``: the named, inactive users whose annotations are imported labels;
- ``corpus``: a labelled corpus (audio + labels CSV) ingested with one corpus annotation
  per clip;
- ``predictions``: an external model's probabilities as weak labels;
- ``labelstudio``: a Label Studio JSON export as corpus annotations.

Imported labels are kept apart from the project's own annotators (`Annotation.label_source`
= "corpus"): they take no queue slot and count in no annotator's work or figures.
"""

from __future__ import annotations

from labelling.services.interop.mapping import (
    PRESETS,
    InteropError,
    LabelMapping,
    load_mapping,
)

__all__ = ["PRESETS", "InteropError", "LabelMapping", "load_mapping"]
