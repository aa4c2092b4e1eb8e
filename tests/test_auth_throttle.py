"""Brute-force protection on the login doors and the API throttles (emoloop/auth.py).

The counters live on the cache production uses: Redis (CACHE_URL, else the test broker's
Redis), each test under its own key prefix; the core cases run on the file-based cache of
`make run` too. Time moves by patching `emoloop.auth.now`: no test sleeps.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from rest_framework.test import APIClient

from emoloop import auth
from tests.conftest import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.auth_urls")]

TOKEN_URL = "/api/auth/token/"
LOGIN_URL = "/accounts/login/"
ADMIN_LOGIN_URL = "/admin/login/"


def _redis_url() -> str | None:
    for url in (os.environ.get("CACHE_URL", ""), django_settings.CELERY_BROKER_URL):
        if url.startswith(("redis://", "rediss://")):
            return url
    return None


def _use_redis(settings) -> Iterator[None]:
    url = _redis_url()
    if url is None:
        pytest.fail(
            "the Redis cache tests need CACHE_URL or CELERY_BROKER_URL on Redis (make test "
            "sets both)"
        )
    prefix = f"test-auth-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    yield
    # Only this test's keys: the database may be shared (never FLUSHDB).
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_cache(settings) -> Iterator[None]:
    yield from _use_redis(settings)


@pytest.fixture(params=["redis", "file"])
def shared_cache(request, settings, tmp_path) -> Iterator[None]:
    """Each shared cache EmoLoop runs on: Redis (production, tests), files (`make run`)."""
    if request.param == "redis":
        yield from _use_redis(settings)
    else:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": str(tmp_path / "cache"),
            }
        }
        yield


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    # Thirty real PBKDF2 checks per test would take seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(auth, "now", fake)
    return fake


@pytest.fixture
def anna(fast_passwords):
    return make_user("anna")  # password "pw-anna"


@pytest.fixture
def bert(fast_passwords):
    return make_user("bert")


def token(client: APIClient, username: str, password: str, address: str = "198.51.100.7"):
    return client.post(TOKEN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


def form_login(client: Client, username: str, password: str, address: str = "198.51.100.7"):
    return client.post(LOGIN_URL, {"username": username, "password": password}, REMOTE_ADDR=address)


# --- The token endpoint ------------------------------------------------------------------


def test_thirty_wrong_passwords_on_the_token_endpoint_are_refused_after_five(
    shared_cache, clock, anna
):
    client = APIClient()
    responses = [token(client, "anna", f"guess-{n}") for n in range(30)]

    assert [r.status_code for r in responses] == [400] * 5 + [429] * 25
    assert "token" not in responses[4].json()
    assert responses[-1].json() == {
        "detail": "Too many failed logins for this username. Try again in 15 minutes.",
        "code": "throttled",
    }
    assert responses[-1]["Retry-After"] == "900"


def test_the_right_password_is_refused_while_locked_and_accepted_once_the_window_passed(
    shared_cache, clock, anna, settings
):
    settings.EMOLOOP_LOGIN_FAILURE_WINDOW_S = 60
    client = APIClient()
    for n in range(5):
        assert token(client, "anna", f"guess-{n}").status_code == 400

    clock.advance(30)
    locked = token(client, "anna", "pw-anna")
    assert locked.status_code == 429
    assert locked["Retry-After"] == "30"
    assert locked.json()["detail"].endswith("Try again in 30 seconds.")

    clock.advance(29)
    assert token(client, "anna", "pw-anna")["Retry-After"] == "1"
    clock.advance(1)
    accepted = token(client, "anna", "pw-anna")
    assert accepted.status_code == 200
    assert set(accepted.json()) == {"token"}


def test_failures_spread_over_the_window_unlock_when_the_oldest_leaves_it(redis_cache, clock, anna):
    client = APIClient()
    for _ in range(5):
        assert token(client, "anna", "wrong").status_code == 400
        clock.advance(120)  # the oldest failure is 600 s old now, the newest 120 s

    locked = token(client, "anna", "pw-anna")
    assert locked.status_code == 429
    assert locked["Retry-After"] == "300"  # 900 s after the first failure
    clock.advance(300)
    assert token(client, "anna", "pw-anna").status_code == 200


def test_the_counts_are_on_redis_under_the_test_prefix(redis_cache, clock, anna, settings):
    token(APIClient(), "anna", "wrong")

    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    client = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}:*"))
    client.close()
    assert [key.split(":")[4] for key in keys] == ["login-account", "login-client", "login-rate"]
    assert not any("anna" in key for key in keys)  # usernames are not stored


def test_a_success_clears_the_account_failures(shared_cache, clock, anna):
    client = APIClient()
    for _ in range(4):
        assert token(client, "anna", "wrong").status_code == 400
    assert token(client, "anna", "pw-anna").status_code == 200

    statuses = [token(client, "anna", "wrong").status_code for _ in range(6)]
    assert statuses == [400] * 5 + [429]


def test_a_locked_account_does_not_lock_another_account(redis_cache, clock, anna, bert):
    client = APIClient()
    for _ in range(6):
        token(client, "anna", "wrong")
    assert token(client, "anna", "pw-anna").status_code == 429

    assert token(client, "bert", "pw-bert").status_code == 200


def test_the_account_is_the_username_in_any_case(redis_cache, clock, anna):
    client = APIClient()
    for name in ["anna", "Anna", "ANNA", " anna ", "aNNa"]:
        assert token(client, name, "wrong").status_code == 400

    assert token(client, "anna", "pw-anna").status_code == 429


def test_an_unknown_username_is_locked_like_a_known_one(redis_cache, clock):
    client = APIClient()
    statuses = [token(client, "nobody", "wrong").status_code for _ in range(6)]
    # Same answers as for a real account: a refusal does not tell whether the account exists.
    assert statuses == [400] * 5 + [429]


def test_the_client_limit_holds_across_usernames(shared_cache, clock, anna):
    client = APIClient()
    statuses = [token(client, f"user{n}", "wrong").status_code for n in range(21)]
    assert statuses == [400] * 20 + [429]

    from_the_attacker = token(client, "anna", "pw-anna")
    assert from_the_attacker.status_code == 429
    assert from_the_attacker.json()["detail"] == (
        "Too many failed logins from your network address. Try again in 15 minutes."
    )
    assert token(client, "anna", "pw-anna", address="203.0.113.9").status_code == 200


def test_forwarded_for_headers_are_ignored_without_trusted_proxies(redis_cache, clock):
    client = APIClient()
    statuses = [
        client.post(
            TOKEN_URL,
            {"username": f"user{n}", "password": "wrong"},
            REMOTE_ADDR="198.51.100.7",
            HTTP_X_FORWARDED_FOR=f"10.0.{n}.1",
        ).status_code
        for n in range(21)
    ]
    assert statuses[-1] == 429


def test_ipv6_clients_are_counted_per_64_block(redis_cache, clock):
    client = APIClient()
    statuses = [
        token(client, f"user{n}", "wrong", address=f"2001:db8:1:2::{n:x}").status_code
        for n in range(21)
    ]
    assert statuses[-1] == 429
    assert token(client, "user-x", "wrong", address="2001:db8:1:3::1").status_code == 400


def test_attempts_per_minute_count_successes_too(redis_cache, clock, anna, settings):
    settings.EMOLOOP_LOGIN_ATTEMPTS_PER_MINUTE = 10
    client = APIClient()
    assert [token(client, "anna", "pw-anna").status_code for _ in range(10)] == [200] * 10

    refused = token(client, "anna", "pw-anna")
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("Too many login attempts from your network")
    assert int(refused["Retry-After"]) <= 60
    clock.advance(60)
    assert token(client, "anna", "pw-anna").status_code == 200


def test_requests_without_a_password_are_not_failures(redis_cache, clock, anna):
    client = APIClient()
    for _ in range(10):
        response = client.post(TOKEN_URL, {"username": "anna"}, REMOTE_ADDR="198.51.100.7")
        assert response.status_code == 400
    assert client.post(TOKEN_URL, [1, 2], format="json").status_code == 400

    assert token(client, "anna", "pw-anna").status_code == 200


def test_a_numeric_username_counts_like_its_text(redis_cache, clock):
    make_user("1234")
    client = APIClient()
    for _ in range(5):
        response = client.post(TOKEN_URL, {"username": 1234, "password": "wrong"}, format="json")
        assert response.status_code == 400
    assert token(client, "1234", "pw-1234").status_code == 429


def test_parallel_guesses_get_no_more_password_checks_than_the_limit(redis_cache, clock):
    # 20 processes' worth of requests at the same instant: each takes its place atomically.
    outcomes: list[object] = []
    start = threading.Barrier(20)

    def attempt(n: int) -> None:
        start.wait()
        outcomes.append(auth.login_guard().begin(username="anna", client=f"10.1.0.{n}"))
        caches["default"].close()

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    allowed = [o for o in outcomes if isinstance(o, auth.Attempt)]
    refused = [o for o in outcomes if isinstance(o, auth.Refusal)]
    assert len(allowed) == 5
    assert {r.reason for r in refused} == {"account"}
    assert sorted(a.account.position for a in allowed) == [1, 2, 3, 4, 5]


def test_bad_limits_in_settings_are_refused(redis_cache, settings):
    settings.EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT = 0
    with pytest.raises(ImproperlyConfigured, match="EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT"):
        auth.login_guard()


# --- The login page and the admin's --------------------------------------------------------


def test_thirty_wrong_passwords_on_the_login_page_are_refused_after_five(shared_cache, clock, anna):
    client = Client()
    responses = [form_login(client, "anna", f"guess-{n}") for n in range(30)]

    assert [r.status_code for r in responses] == [200] * 5 + [429] * 25
    assert b"Wrong username or password." in responses[4].content
    last = responses[-1]
    assert last["Retry-After"] == "900"
    assert b"Too many failed logins for this username. Try again in 15 minutes." in last.content
    assert b"Wrong username or password." not in last.content


def test_the_login_page_refuses_the_right_password_while_locked(shared_cache, clock, anna):
    client = Client()
    for _ in range(5):
        form_login(client, "anna", "wrong")

    locked = form_login(client, "anna", "pw-anna")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    clock.advance(900)
    accepted = form_login(client, "anna", "pw-anna")
    assert accepted.status_code == 302
    assert client.session["_auth_user_id"] == str(anna.pk)


def test_the_login_page_and_the_token_endpoint_share_the_count(redis_cache, clock, anna):
    for _ in range(3):
        form_login(Client(), "anna", "wrong")
    for _ in range(2):
        token(APIClient(), "anna", "wrong")

    assert form_login(Client(), "anna", "pw-anna").status_code == 429


def test_the_admin_login_page_is_guarded_too(redis_cache, clock, settings):
    make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    for _ in range(5):
        response = client.post(
            ADMIN_LOGIN_URL, {"username": "root", "password": "wrong"}, REMOTE_ADDR="10.9.9.9"
        )
        assert response.status_code == 200

    locked = client.post(
        ADMIN_LOGIN_URL, {"username": "root", "password": "pw-root"}, REMOTE_ADDR="10.9.9.9"
    )
    assert locked.status_code == 429
    assert b"Too many failed logins for this username." in locked.content
    clock.advance(900)
    accepted = client.post(
        ADMIN_LOGIN_URL, {"username": "root", "password": "pw-root"}, REMOTE_ADDR="10.9.9.9"
    )
    assert accepted.status_code == 302


# --- Who the client is -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.7", "203.0.113.1", [], "198.51.100.7"),
        ("10.0.0.2", "203.0.113.1", ["10.0.0.0/8"], "203.0.113.1"),
        # The client wrote the left entry; our proxies appended the rest.
        ("10.0.0.2", "1.2.3.4, 203.0.113.1, 10.0.0.3", ["10.0.0.0/8"], "203.0.113.1"),
        ("10.0.0.2", "", ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", "203.0.113.1:5555", ["10.0.0.2"], "203.0.113.1"),
        ("10.0.0.2", "[2001:db8::5]:443", ["10.0.0.2"], "2001:db8::/64"),
        ("::ffff:198.51.100.7", "", [], "198.51.100.7"),
        ("2001:db8:aa:bb:1:2:3:4", "", [], "2001:db8:aa:bb::/64"),
    ],
)
def test_client_address(rf, settings, peer, forwarded, trusted, expected):
    settings.EMOLOOP_TRUSTED_PROXIES = trusted
    request = rf.get("/", REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded)
    assert auth.client_address(request) == expected


def test_a_malformed_trusted_proxy_is_refused(rf, settings):
    settings.EMOLOOP_TRUSTED_PROXIES = ["10.0.0.0/8", "proxy.internal"]
    with pytest.raises(ImproperlyConfigured, match=r"proxy\.internal"):
        auth.client_address(rf.get("/", REMOTE_ADDR="10.0.0.2"))


# --- API throttles -----------------------------------------------------------------------


def test_predict_throttle_counts_per_user(redis_cache, clock, settings, client_for, anna, bert):
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"predict": "3/min"},
    }
    url = "/test-throttles/predict"
    statuses = [client_for(anna).post(url).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client_for(anna).post(url)
    assert 1 <= int(refused["Retry-After"]) <= 60

    assert client_for(bert).post(url).status_code == 200
    clock.advance(60)
    assert client_for(anna).post(url).status_code == 200


def test_predict_throttle_defaults_to_30_a_minute(redis_cache, clock, settings, client_for, anna):
    settings.REST_FRAMEWORK = {**django_settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}
    client = client_for(anna)
    statuses = [client.post("/test-throttles/predict").status_code for _ in range(31)]
    assert statuses == [200] * 30 + [429]


def test_anon_throttle_ignores_forged_forwarded_for(redis_cache, clock, settings, client_for, anna):
    settings.REST_FRAMEWORK = {
        **django_settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min"},
    }
    client = APIClient()
    statuses = [
        client.get("/test-throttles/anonymous", HTTP_X_FORWARDED_FOR=f"10.2.0.{n}").status_code
        for n in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    # Signed-in users are not counted by it.
    assert client_for(anna).get("/test-throttles/anonymous").status_code == 200


@pytest.mark.parametrize(
    ("rate", "expected"), [("30/min", (30, 60)), ("5/s", (5, 1)), ("100/hour", (100, 3600))]
)
def test_parse_rate(rate, expected):
    assert auth.parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["lots", "0/min", "3/fortnight-ish"])
def test_parse_rate_refuses_nonsense(rate):
    with pytest.raises(ImproperlyConfigured):
        auth.parse_rate(rate)
