"""Brute-force protection for the login doors, and the API's rate throttles.

Three doors take a password: the login page (`ThrottledLoginView`), the token endpoint
(`ThrottledTokenView`, DRF's ObtainAuthToken contract) and the Django admin's login page
(`admin_login`). Each asks one `LoginGuard` before it checks the password and tells it the
outcome afterwards; the guard counts on Django's shared cache (Redis in production, a
file-based cache under `make run`), so every web process sees the same counts:

- failed logins per account (the username, case-insensitive, whether or not it exists, so a
  refusal never tells an account exists): `EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT` (5);
- failed logins per client address: `EMOLOOP_LOGIN_MAX_FAILURES_PER_CLIENT` (20), both within
  the last `EMOLOOP_LOGIN_FAILURE_WINDOW_S` (900 s);
- login attempts per client address, failed or not: `EMOLOOP_LOGIN_ATTEMPTS_PER_MINUTE` (60).

Over a limit, the door answers 429 with Retry-After and a sentence, without checking the
password, until enough failures have left the window. A successful login clears its account's
failures (not its client's: a valid account must not reset an attacker's address).

Counting is atomic across processes on Redis: an attempt *reserves* its place with an
increment before the password is checked, and is refused when the place is over the limit, so
20 parallel guesses get exactly as many checks as the limit allows (a check-then-count guard
lets them all through). A success gives its place back. The file-based cache of `make run`
increments by read-then-write: there, a burst of parallel requests may overshoot a little.

If the cache is down, logins fail with an error: there is no silent fallback to "no limit".
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import math
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

log = logging.getLogger(__name__)

CACHE_ALIAS = "default"
KEY_PREFIX = "emoloop:rl"
# A window is counted in this many slots: a failure leaves the count between one slot
# (window / 15: one minute of the default 15 minutes) before `window` after it and `window`.
SLOTS_PER_WINDOW = 15


def now() -> float:
    """Seconds since the epoch: the one clock of this module (tests move it with monkeypatch)."""
    return time.time()


# --- Counting on the shared cache ---------------------------------------------------------


def _increment(cache: BaseCache, key: str, ttl: int) -> int:
    """Atomically add one to `key` (created at 0 with `ttl`) and return the new count."""
    cache.add(key, 0, timeout=ttl)
    try:
        value = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.add(key, 0, timeout=ttl)
        value = cache.incr(key)
    # BaseCache.incr (the file-based cache's) writes the value back with the cache's default
    # timeout, which may be shorter than the window: keep the key alive for the whole window.
    # Correctness never depends on expiry (keys are named by time slot); this is housekeeping.
    cache.touch(key, ttl)
    return int(value)


def _decrement(cache: BaseCache, key: str) -> None:
    with contextlib.suppress(ValueError):  # already expired: nothing left to give back
        cache.decr(key)


@dataclass(frozen=True)
class Reservation:
    """A place taken in a window: `position` events, this one included, are in the window."""

    key: str
    position: int


@dataclass(frozen=True)
class Full:
    """The window holds `limit` events already; a place frees up in `retry_after` seconds."""

    retry_after: int


class SlidingCounter:
    """Events per identity in the last `window_s` seconds, on a shared cache.

    The window is cut into time slots, one cache key per identity and slot
    (`<namespace>:<identity>:<slot number>`). An event increments its slot (atomic on Redis);
    the count is the sum over the slots of the window. Keys are named by slot, so the count
    follows `clock` alone: cache expiry only collects old keys.
    """

    def __init__(
        self, cache: BaseCache, namespace: str, window_s: int, clock: Callable[[], float]
    ) -> None:
        self.cache = cache
        self.namespace = namespace
        self.slot_s = max(1, math.ceil(window_s / SLOTS_PER_WINDOW))
        self.slots = math.ceil(window_s / self.slot_s)
        self.clock = clock

    def _keys(self, identity: str, at: float) -> tuple[list[str], int]:
        """The window's keys, oldest first, and the number of the oldest slot."""
        current = int(at // self.slot_s)
        first = current - self.slots + 1
        keys = [f"{self.namespace}:{identity}:{n}" for n in range(first, current + 1)]
        return keys, first

    def _retry_after(self, counts: Sequence[int], first: int, limit: int, at: float) -> int:
        """Seconds until fewer than `limit` events remain in the window (counts: oldest first)."""
        remaining = sum(counts)
        for offset, count in enumerate(counts):
            remaining -= count
            if remaining < limit:
                # Slot `first + offset` leaves the window when slot `first + offset + slots`
                # begins.
                return max(1, math.ceil((first + offset + self.slots) * self.slot_s - at))
        return self.slots * self.slot_s  # unreachable for limit >= 1

    def reserve(self, identity: str, limit: int) -> Reservation | Full:
        """Count one event if the window holds fewer than `limit`; a refused one is not counted."""
        at = self.clock()
        keys, first = self._keys(identity, at)
        found = self.cache.get_many(keys)
        counts = [int(found.get(key, 0)) for key in keys]
        if sum(counts) >= limit:
            return Full(self._retry_after(counts, first, limit, at))
        # Other processes may be taking places at the same moment: the increment decides.
        mine = _increment(self.cache, keys[-1], ttl=(self.slots + 1) * self.slot_s)
        position = sum(counts[:-1]) + mine
        if position > limit:
            _decrement(self.cache, keys[-1])
            return Full(self._retry_after([*counts[:-1], mine - 1], first, limit, at))
        return Reservation(keys[-1], position)

    def release(self, reservation: Reservation) -> None:
        """Give a place back (the event turned out not to count)."""
        _decrement(self.cache, reservation.key)

    def clear(self, identity: str) -> None:
        keys, _first = self._keys(identity, self.clock())
        self.cache.delete_many(keys)


# --- Who is asking -----------------------------------------------------------------------

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[_Network, ...]:
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"EMOLOOP_TRUSTED_PROXIES holds {entry!r}, which is not an IP address or network"
            ) from exc
    return tuple(networks)


def _parse_address(text: str) -> _Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # 203.0.113.7:443
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _bucket(address: _Address) -> str:
    """IPv4 per address; IPv6 per /64, the block one subscriber usually holds whole."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(request: HttpRequest) -> str:
    """The address login and anonymous limits count against.

    REMOTE_ADDR, unless it is one of `EMOLOOP_TRUSTED_PROXIES` (addresses or networks; none by
    default, as docker/docker-compose.yml publishes gunicorn directly). Behind trusted proxies
    it is the right-most X-Forwarded-For entry that is not a trusted proxy: entries further
    left were written by the client and can be anything.
    """
    peer_text = request.META.get("REMOTE_ADDR", "") or ""
    peer = _parse_address(peer_text)
    if peer is None:
        return peer_text[:100] or "unknown"
    trusted = _trusted_networks(tuple(settings.EMOLOOP_TRUSTED_PROXIES))
    if not any(peer in network for network in trusted):
        return _bucket(peer)
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed([hop.strip() for hop in hops if hop.strip()]):
        address = _parse_address(hop)
        if address is None:
            # Written by our own proxy (every entry right of it was), so not spoofed.
            return hop[:100]
        if not any(address in network for network in trusted):
            return _bucket(address)
    return _bucket(peer)


def _digest(text: str) -> str:
    # Fixed-length, key-safe on every cache backend, and no usernames stored in the cache.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def normalise_username(username: str) -> str:
    """The account a login attempt counts against: 'Anna', ' anna' and 'ANNA' are one."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


# --- The login guard ---------------------------------------------------------------------


def _positive_int(name: str) -> int:
    """A limit from the settings (emoloop/settings.py reads it from the environment and
    bounds it; tests that override it through the settings fixture are checked here too)."""
    value = getattr(settings, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(f"{name} must be a whole number of at least 1, got {value!r}")
    return value


@dataclass(frozen=True)
class LoginLimits:
    max_failures_per_account: int
    max_failures_per_client: int
    failure_window_s: int
    attempts_per_minute: int

    @classmethod
    def from_settings(cls) -> LoginLimits:
        return cls(
            max_failures_per_account=_positive_int("EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT"),
            max_failures_per_client=_positive_int("EMOLOOP_LOGIN_MAX_FAILURES_PER_CLIENT"),
            failure_window_s=_positive_int("EMOLOOP_LOGIN_FAILURE_WINDOW_S"),
            attempts_per_minute=_positive_int("EMOLOOP_LOGIN_ATTEMPTS_PER_MINUTE"),
        )


def _in_words(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


@dataclass(frozen=True)
class Refusal:
    """A login attempt refused before its password was checked."""

    reason: Literal["account", "client", "rate"]
    retry_after: int

    @property
    def message(self) -> str:
        wait = _in_words(self.retry_after)
        if self.reason == "account":
            return f"Too many failed logins for this username. Try again in {wait}."
        if self.reason == "client":
            return f"Too many failed logins from your network address. Try again in {wait}."
        return f"Too many login attempts from your network address. Try again in {wait}."


@dataclass(frozen=True)
class Attempt:
    """A login attempt allowed to check its password; tell the guard how it ended."""

    username: str
    client: str
    account: Reservation | None = None
    client_failure: Reservation | None = None


class LoginGuard:
    def __init__(self, cache: BaseCache, limits: LoginLimits, clock: Callable[[], float]):
        self.limits = limits
        window = limits.failure_window_s
        self._accounts = SlidingCounter(cache, f"{KEY_PREFIX}:login-account", window, clock)
        self._clients = SlidingCounter(cache, f"{KEY_PREFIX}:login-client", window, clock)
        self._attempts = SlidingCounter(cache, f"{KEY_PREFIX}:login-rate", 60, clock)

    def begin(self, *, username: str, client: str) -> Attempt | Refusal:
        """Count an attempt; refuse it, or let it check its password.

        `username` is empty when the request lacks a username or a password: no password will
        be checked, so only the attempt rate counts it.
        """
        client_id = _digest(client)
        rate = self._attempts.reserve(client_id, self.limits.attempts_per_minute)
        if isinstance(rate, Full):
            return Refusal("rate", rate.retry_after)
        if not username:
            return Attempt(username="", client=client)
        # The attempt holds a place as a failure until it succeeds (see the module docstring).
        account = self._accounts.reserve(
            _digest(normalise_username(username)), self.limits.max_failures_per_account
        )
        if isinstance(account, Full):
            return Refusal("account", account.retry_after)
        client_failure = self._clients.reserve(client_id, self.limits.max_failures_per_client)
        if isinstance(client_failure, Full):
            self._accounts.release(account)
            return Refusal("client", client_failure.retry_after)
        return Attempt(username, client, account, client_failure)

    def succeeded(self, attempt: Attempt) -> None:
        if attempt.account is None or attempt.client_failure is None:
            return
        self._accounts.clear(_digest(normalise_username(attempt.username)))
        self._clients.release(attempt.client_failure)

    def failed(self, attempt: Attempt) -> None:
        """The reserved places stand as failures; say so in the log when one fills a limit."""
        if attempt.account is None or attempt.client_failure is None:
            return
        if attempt.account.position == self.limits.max_failures_per_account:
            log.warning(
                "Login locked for username %r after %d failures (last from %s)",
                attempt.username[:150],
                attempt.account.position,
                attempt.client,
            )
        if attempt.client_failure.position == self.limits.max_failures_per_client:
            log.warning(
                "Logins locked from %s after %d failures",
                attempt.client,
                attempt.client_failure.position,
            )


def login_guard() -> LoginGuard:
    """The guard on the shared cache, with the limits of the current settings."""
    return LoginGuard(caches[CACHE_ALIAS], LoginLimits.from_settings(), clock=now)


def _as_text(value: object) -> str:
    # What DRF's CharField accepts as text (it turns numbers into strings, refuses booleans).
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return str(value)


def _username_to_check(data: Mapping[str, Any]) -> str:
    """The username whose password the request will check, or "" when it will check none."""
    username, password = _as_text(data.get("username")), _as_text(data.get("password"))
    return username if username.strip() and password else ""


# --- The doors ---------------------------------------------------------------------------


def _refusal_body(refusal: Refusal) -> dict[str, str]:
    return {"detail": refusal.message, "code": "throttled"}


class ThrottledTokenView(ObtainAuthToken):
    """POST username and password, get `{"token": ...}`: DRF's obtain_auth_token, guarded."""

    throttle_classes = ()  # the login guard is this door's throttle

    @extend_schema(
        description="The user's API token for their username and password. Failed logins are "
        "counted per username and per client address; over a limit the answer is 429 with "
        "Retry-After, even for the right password (docs/security.md, 'Rate limits').",
        request=AuthTokenSerializer,
        responses={
            200: inline_serializer("AuthToken", {"token": serializers.CharField()}),
            400: OpenApiResponse(description="Wrong username or password, or a field missing."),
            429: OpenApiResponse(
                description="Too many failed logins for the username or from the address, or "
                "too many attempts: `{detail, code: throttled}` and Retry-After (seconds)."
            ),
        },
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        guard = login_guard()
        data = request.data if isinstance(request.data, Mapping) else {}
        outcome = guard.begin(username=_username_to_check(data), client=client_address(request))
        if isinstance(outcome, Refusal):
            return Response(
                _refusal_body(outcome),
                status=429,
                headers={"Retry-After": str(outcome.retry_after)},
            )
        serializer = self.get_serializer(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
        except DRFValidationError:
            guard.failed(outcome)
            raise
        guard.succeeded(outcome)
        token, _created = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


def _refused_form(
    form_class: type[AuthenticationForm], kwargs: dict[str, Any], message: str
) -> AuthenticationForm:
    """The bound login form with the refusal as its error; its password is never checked."""

    def clean(self: AuthenticationForm) -> dict[str, Any]:
        # Replaces AuthenticationForm.clean, the one place that checks the password.
        raise ValidationError(message, code="throttled")

    refused = type(form_class.__name__, (form_class,), {"clean": clean})
    form: AuthenticationForm = refused(**kwargs)
    form.is_valid()
    return form


class ThrottledLoginView(LoginView):
    """Django's LoginView behind the login guard: 429 and the refusal on the form when locked.

    A wrong password re-renders the form with 200, as LoginView does. The refusal is the
    form's non-field error (the admin's template shows those) and `lockout` in the context.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        guard = login_guard()
        outcome = guard.begin(
            username=_username_to_check(request.POST), client=client_address(request)
        )
        if isinstance(outcome, Refusal):
            form = _refused_form(self.get_form_class(), self.get_form_kwargs(), outcome.message)
            response = self.render_to_response(
                self.get_context_data(form=form, lockout=outcome.message), status=429
            )
            response["Retry-After"] = str(outcome.retry_after)
            return response
        form = self.get_form()
        if form.is_valid():
            guard.succeeded(outcome)
            return self.form_valid(form)
        guard.failed(outcome)
        return self.form_invalid(form)


def admin_login(request: HttpRequest) -> HttpResponseBase:
    """The Django admin's login page (AdminSite.login, Django 5.2) behind the login guard.

    Mounted at admin/login/ ahead of admin.site.urls: the admin is a door too.
    """
    site = admin.site
    if request.method == "GET" and site.has_permission(request):
        return HttpResponseRedirect(reverse("admin:index", current_app=site.name))
    context = {
        **site.each_context(request),
        "title": _("Log in"),
        "subtitle": None,
        "app_path": request.get_full_path(),
        "username": request.user.get_username(),
    }
    if REDIRECT_FIELD_NAME not in request.GET and REDIRECT_FIELD_NAME not in request.POST:
        context[REDIRECT_FIELD_NAME] = reverse("admin:index", current_app=site.name)
    request.current_app = site.name
    view = ThrottledLoginView.as_view(
        extra_context=context,
        authentication_form=site.login_form or AdminAuthenticationForm,
        template_name=site.login_template or "admin/login.html",
    )
    return view(request)


# --- API throttles -----------------------------------------------------------------------


def parse_rate(rate: str) -> tuple[int, int]:
    """'30/min' -> (30, 60): requests per period in seconds (s, min, hour, day; DRF's forms)."""
    try:
        count, period = rate.split("/")
        seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[0]]
        requests = int(count)
    except (ValueError, KeyError, IndexError) as exc:
        raise ImproperlyConfigured(f"A throttle rate looks like '30/min', got {rate!r}") from exc
    if requests < 1:
        raise ImproperlyConfigured(f"A throttle rate allows at least 1 request, got {rate!r}")
    return requests, seconds


class CountingRateThrottle(BaseThrottle):
    """A DRF throttle on the shared cache's atomic counters, rate from DEFAULT_THROTTLE_RATES.

    Unlike DRF's SimpleRateThrottle (a list of timestamps read and written back), parallel
    requests from several processes cannot all slip under the limit. Refused requests do not
    count.
    """

    scope = ""
    default_rate = ""

    def __init__(self) -> None:
        self._full: Full | None = None

    def identity(self, request: Request, view: APIView) -> str | None:
        """Whom to count, or None not to throttle this request."""
        raise NotImplementedError

    def allow_request(self, request: Request, view: APIView) -> bool:
        identity = self.identity(request, view)
        if identity is None:
            return True
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or self.default_rate
        requests, seconds = parse_rate(str(rate))
        counter = SlidingCounter(caches[CACHE_ALIAS], f"{KEY_PREFIX}:{self.scope}", seconds, now)
        outcome = counter.reserve(_digest(identity), requests)
        self._full = outcome if isinstance(outcome, Full) else None
        return self._full is None

    def wait(self) -> float | None:
        return None if self._full is None else float(self._full.retry_after)


class PredictThrottle(CountingRateThrottle):
    """Per user: `DEFAULT_THROTTLE_RATES["predict"]`, 30/min by default (decoding and a model
    forward pass in the web process, for each upload)."""

    scope = "predict"
    default_rate = "30/min"

    def identity(self, request: Request, view: APIView) -> str | None:
        user = request.user
        if user is not None and user.is_authenticated:
            return f"user:{user.pk}"
        return f"client:{client_address(request)}"


class AnonThrottle(CountingRateThrottle):
    """Anonymous requests per client address: `DEFAULT_THROTTLE_RATES["anon"]`, 60/min.

    Replaces DRF's AnonRateThrottle, which (NUM_PROXIES unset) counts per X-Forwarded-For
    header as sent, so a client that sends a new header each time is never throttled.
    """

    scope = "anon"
    default_rate = "60/min"

    def identity(self, request: Request, view: APIView) -> str | None:
        user = request.user
        if user is not None and user.is_authenticated:
            return None
        return client_address(request)
