"""The request being served, for the audit log's actor and client address.

Services record events without a request argument (they are called from the API, pages,
the admin, commands and tasks alike); `audit.middleware.AuditContextMiddleware` keeps the
current request here so `audit.services.record` can name who did it and from where. DRF
copies the user it authenticates (token or session) onto the Django request, so the actor
is right for API calls too. Outside a request (workers, commands) there is none.
"""

from __future__ import annotations

from contextvars import ContextVar

from django.http import HttpRequest

current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)
