"""The API's token authentication: DRF's, with its query written once as SQL.

Every API call with a token asks for the token and its user. DRF's `TokenAuthentication`
compiles `Token.objects.select_related("user").get(key=…)` each time, about a tenth of the
CPU of an annotator's submit (bench/queue.py); this class answers the same question with
one hand-written query (emoloop.rows) on PostgreSQL and the same refusals ("Invalid
token.", "User inactive or deleted."). Elsewhere (SQLite) it is DRF's class unchanged.

Not in emoloop.auth: DRF reads DEFAULT_AUTHENTICATION_CLASSES when its APIView class is
defined, and emoloop.auth imports DRF's views (an import cycle).
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from emoloop import rows

_USER_BY_KEY = """
SELECT t.{created}, {user_columns}
FROM {token} t JOIN {user} u ON u.{user_id} = t.{token_user}
WHERE t.{key} = %s
"""


@functools.cache
def _statement() -> str:
    column = rows.column
    return _USER_BY_KEY.format(
        created=column(Token, "created"), user_columns=rows.select_list(User, "u"),
        token=rows.table(Token), user=rows.table(User), user_id=column(User, "id"),
        token_user=column(Token, "user"), key=column(Token, "key"),
    )  # fmt: skip


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`, as DRF's class, in one hand-written query."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if not rows.enabled():
            return super().authenticate_credentials(key)
        if "\x00" in key:  # no key holds NUL, and PostgreSQL refuses it in a parameter
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        with connection.cursor() as cursor:
            cursor.execute(_statement(), [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        return self.accept(key, rows.instance(User, row[1:]), row[0])

    @staticmethod
    def accept(key: str, user: User, created: Any) -> tuple[User, Token]:
        """The (user, token) pair DRF's class answers for a token found by a hand-written
        query, or its refusal of an inactive user."""
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token = Token(key=key, user=user, created=created)
        token._state.adding, token._state.db = False, "default"
        return user, token
