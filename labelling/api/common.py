"""What every endpoint module of the API shares: filter backends and the id pattern."""

from __future__ import annotations

from rest_framework.filters import OrderingFilter

from labelling.filters import StrictFilterBackend

FILTER_BACKENDS = [StrictFilterBackend, OrderingFilter]
# Object ids in URLs are integers: anything else is a 404 from the router, not a 500.
INT_LOOKUP = r"\d+"
