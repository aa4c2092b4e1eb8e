"""EmoLoop settings, read from the environment.

This module is the only place the environment is read, always through emoloop/env.py's typed
helpers (a malformed or out-of-range value stops start-up with the variable's name). Other
modules read ``django.conf.settings``, so tests change a value with the ``settings`` fixture.
Every variable has a comment here and a line in docker/.env.example with its default;
tests/test_configuration.py checks both.

`make run` works with no environment at all: SQLite, kombu's filesystem broker and every
file under ``var/`` (git-ignored). Production and the test suite set DATABASE_URL
(PostgreSQL) and CELERY_BROKER_URL (Redis).
"""

from __future__ import annotations

import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from emoloop.env import env_bool, env_float, env_int, env_list, env_str
from emoloop.logs import logging_config
from emoloop.security import check_secret_key
from emoloop.storage import (
    check_audio_delivery,
    csp_with_origin,
    s3_options,
    s3_origin,
    storages_setting,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# Everything the platform writes (database, media, broker spool) lives under one folder.
DATA_DIR = Path(env_str("EMOLOOP_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# Django's debug pages; off unless asked for (`make run` asks).
DEBUG = env_bool("DEBUG", False)
# Development mode is what `make run` and the tests use; it is the only place a generated
# SECRET_KEY is acceptable.
DEV_MODE = env_bool("EMOLOOP_DEV", False)

# Signs sessions and CSRF tokens. Required outside development (see below).
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY and (DEBUG or DEV_MODE):
    # A development key unique to this checkout, kept in var/ so sessions survive restarts.
    _key_file = DATA_DIR / "dev-secret-key"
    if _key_file.exists():
        SECRET_KEY = _key_file.read_text().strip()
    else:
        import secrets

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)
# Empty: refused everywhere. A placeholder (change-me-..., django-insecure-...) or a weak key:
# refused outside development (emoloop/security.py, tests/test_secret_key.py).
check_secret_key(SECRET_KEY, dev_mode=DEBUG or DEV_MODE)

# Comma-separated host names the site answers to (Django refuses other Host headers).
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Comma-separated origins (scheme included) whose unsafe requests pass the CSRF check.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "labelling",
    "learner",
    "exports",
    "audit",
    "ops",
    "review",
    "console",
]

MIDDLEWARE = [
    # An id per request, in the X-Request-ID response header and on every log record.
    "emoloop.middleware.RequestIdMiddleware",
    # Request latency for /metrics (by route pattern), timing everything below it.
    "ops.middleware.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "emoloop.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Keeps the request for the audit log's actor and address (audit.context).
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "emoloop.urls"
WSGI_APPLICATION = "emoloop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        # postgres://user:password@host:port/name in production and tests; SQLite under the
        # data folder for `make run`.
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'emoloop.sqlite3'}"),
        # Seconds a database connection is kept between requests (0: one per request).
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
    )
}
# The annotator's lease statement as a server-side prepared statement, planned once per
# connection (emoloop.rows.execute_prepared); false behind a transaction-mode pooler.
EMOLOOP_PREPARED_STATEMENTS = env_bool("EMOLOOP_PREPARED_STATEMENTS", True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share the file under `make run`.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
elif "postgresql" in DATABASES["default"]["ENGINE"] and EMOLOOP_PREPARED_STATEMENTS:
    # No JIT compilation: PostgreSQL compiles a query whose estimated cost passes
    # jit_above_cost, which the lease statement's rare fallback over the whole pool does
    # (an upper bound: it stops at its first candidate), and the compiling took ~0.4 s a
    # call, run by run, where the query itself takes milliseconds (bench/queue.py). Sent as
    # a startup option, added to any the DATABASE_URL gives (one it gives for jit wins).
    # Not behind a transaction-mode pooler (EMOLOOP_PREPARED_STATEMENTS=false there):
    # PgBouncer refuses startup options it does not track; set it on the database instead,
    # `ALTER DATABASE emoloop SET jit = off` (docs/deploying.md).
    _pg_options = DATABASES["default"].setdefault("OPTIONS", {})
    if not re.search(r"\bjit\s*=", str(_pg_options.get("options", ""))):
        _pg_options["options"] = f"{_pg_options.get('options', '')} -c jit=off".strip()

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------------------
# Login failure counts and API rate limits (emoloop/auth.py) live here, so the cache must be
# shared by every web process: Redis in production and in `make test` (CACHE_URL), files
# under the data folder for `make run` (two gunicorn workers). The key prefix defaults to
# the database's name: the counts describe one database's users, and two checkouts testing
# on one Redis database stay apart.
CACHE_URL = env_str("CACHE_URL", "")
# CACHE_KEY_PREFIX: put before every cache key; the database's name by default (see above).
_cache_key_prefix = env_str("CACHE_KEY_PREFIX", Path(str(DATABASES["default"]["NAME"])).name)
CACHES: dict[str, dict[str, object]]
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": _cache_key_prefix,
        }
    }
elif CACHE_URL:
    # The URL may hold a password: name only its scheme.
    raise ImproperlyConfigured(
        f"CACHE_URL must start with redis://, rediss:// or unix://, not {CACHE_URL.split(':')[0]}:"
    )
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
            "KEY_PREFIX": _cache_key_prefix,
            # The default (300) culls entries early: login counts must outlive the window.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    }

# --- Login throttling (emoloop/auth.py) ---------------------------------------------------
# Failed logins per username and per client address within the window; over a limit the
# login page, the token endpoint and the admin's login page answer 429 until failures age out.
EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT = env_int(
    "EMOLOOP_LOGIN_MAX_FAILURES_PER_ACCOUNT", 5, minimum=1
)
EMOLOOP_LOGIN_MAX_FAILURES_PER_CLIENT = env_int(
    "EMOLOOP_LOGIN_MAX_FAILURES_PER_CLIENT", 20, minimum=1
)
EMOLOOP_LOGIN_FAILURE_WINDOW_S = env_int("EMOLOOP_LOGIN_FAILURE_WINDOW_S", 900, minimum=1)
# Every login attempt per client address, failed or not.
EMOLOOP_LOGIN_ATTEMPTS_PER_MINUTE = env_int("EMOLOOP_LOGIN_ATTEMPTS_PER_MINUTE", 60, minimum=1)
# Reverse proxies (addresses or networks) whose X-Forwarded-For is believed; none by default
# (docker-compose publishes gunicorn directly). Without them X-Forwarded-For is ignored.
EMOLOOP_TRUSTED_PROXIES = env_list("EMOLOOP_TRUSTED_PROXIES", [])

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"  # filled by collectstatic (make run, docker)
# Uploaded and imported audio, model files and exports.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
# No MEDIA_URL route is mounted: audio is only served through permission-checked views.
MEDIA_URL = "/media-not-served/"

# --- Storage (emoloop/storage.py; docs/deploying.md, "Storage") ----------------------------
# local: files under MEDIA_ROOT on this host (`make run`, one machine). s3: an S3-compatible
# object store (AWS S3, MinIO, Ceph RGW) through django-storages, shared by every web and
# worker host; then nothing a worker needs is on one host's disk.
EMOLOOP_STORAGE = env_str("EMOLOOP_STORAGE", "local").strip().lower()
S3_BUCKET = env_str("S3_BUCKET", "")
# Empty: AWS S3 in S3_REGION. MinIO/Ceph/moto: their URL, e.g. http://minio:9000.
S3_ENDPOINT_URL = env_str("S3_ENDPOINT_URL", "")
# The endpoint as browsers reach it, for presigned audio URLs (empty: S3_ENDPOINT_URL).
S3_PUBLIC_ENDPOINT_URL = env_str("S3_PUBLIC_ENDPOINT_URL", "")
S3_REGION = env_str("S3_REGION", "us-east-1")
S3_PREFIX = env_str("S3_PREFIX", "").strip("/")  # key prefix: several deployments, one bucket
# path (MinIO, Ceph, moto) or virtual (AWS); empty: path when S3_ENDPOINT_URL is set.
S3_ADDRESSING_STYLE = env_str("S3_ADDRESSING_STYLE", "")
# How audio reaches the browser, always after the view's permission check: view (the view
# streams it), presigned (302 to a presigned URL; s3 only), accel (X-Accel-Redirect to nginx).
EMOLOOP_AUDIO_DELIVERY = check_audio_delivery(
    env_str("EMOLOOP_AUDIO_DELIVERY", "view").strip().lower(), EMOLOOP_STORAGE
)
EMOLOOP_AUDIO_URL_TTL = env_int("EMOLOOP_AUDIO_URL_TTL", 300, minimum=1)  # presigned, seconds
# nginx's `internal` location for accel mode (docs/deploying.md).
EMOLOOP_AUDIO_ACCEL_LOCATION = env_str("EMOLOOP_AUDIO_ACCEL_LOCATION", "/_protected_media/")
STORAGES = storages_setting(
    EMOLOOP_STORAGE,
    s3_options(
        bucket=S3_BUCKET,
        endpoint_url=S3_ENDPOINT_URL,
        region=S3_REGION,
        access_key=env_str("AWS_ACCESS_KEY_ID", ""),
        secret_key=env_str("AWS_SECRET_ACCESS_KEY", ""),
        prefix=S3_PREFIX,
        addressing_style=S3_ADDRESSING_STYLE,
        url_ttl=EMOLOOP_AUDIO_URL_TTL,
    )
    if EMOLOOP_STORAGE == "s3"
    else None,
)

# WhiteNoise serves STATIC_ROOT; in development it may not be collected yet.
WHITENOISE_USE_FINDERS = DEBUG or DEV_MODE
WHITENOISE_AUTOREFRESH = DEBUG or DEV_MODE
if WHITENOISE_USE_FINDERS:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- Security headers -------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Session and CSRF cookies only over HTTPS; off by default only in development.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not (DEBUG or DEV_MODE))
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# wavesurfer's spectrogram plugin starts a worker from a blob: URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)
if EMOLOOP_AUDIO_DELIVERY == "presigned":
    # The page fetches audio from the object store (a 302 from the audio view).
    CONTENT_SECURITY_POLICY = csp_with_origin(
        CONTENT_SECURITY_POLICY,
        # The host of a URL signed like the audio view's (offline), not a guess at it.
        s3_origin(STORAGES["default"]["OPTIONS"], S3_PUBLIC_ENDPOINT_URL),
        ("connect-src", "media-src"),
    )

# --- Uploads and ingestion limits -------------------------------------------------------
# One uploaded or imported file, in bytes and seconds of audio.
EMOLOOP_MAX_FILE_BYTES = env_int("EMOLOOP_MAX_FILE_BYTES", 200 * 1024 * 1024, minimum=1)
EMOLOOP_MAX_CLIP_SECONDS = env_float("EMOLOOP_MAX_CLIP_SECONDS", 120.0, minimum=0.1)
# Long production recordings are accepted only when they are segmented.
EMOLOOP_MAX_RECORDING_SECONDS = env_float("EMOLOOP_MAX_RECORDING_SECONDS", 4 * 3600.0, minimum=0.1)
# Members (files and folders) in one archive.
EMOLOOP_MAX_ARCHIVE_MEMBERS = env_int("EMOLOOP_MAX_ARCHIVE_MEMBERS", 100_000, minimum=1)
# Everything expanded from one archive, in bytes (a small zip can claim gigabytes).
EMOLOOP_MAX_ARCHIVE_BYTES = env_int("EMOLOOP_MAX_ARCHIVE_BYTES", 2 * 1024**3, minimum=1)
# Decoding work is bounded before any decode: frames x channels may not exceed
# duration x this rate (48 kHz x 8 channels; 384 kHz mono). A 400 kB FLAC declaring
# 8 channels at 384 kHz is refused from its header.
EMOLOOP_MAX_SAMPLES_PER_SECOND = env_int("EMOLOOP_MAX_SAMPLES_PER_SECOND", 384_000, minimum=8000)
# The predict API decodes uploads in the web process: smaller limits than imports.
EMOLOOP_PREDICT_MAX_BYTES = env_int("EMOLOOP_PREDICT_MAX_BYTES", 20 * 1024 * 1024, minimum=1)
EMOLOOP_PREDICT_MAX_SECONDS = env_float("EMOLOOP_PREDICT_MAX_SECONDS", 60.0, minimum=0.1)
# The import API may fetch a URL it is given (false: uploads only).
EMOLOOP_URL_IMPORT_ENABLED = env_bool("EMOLOOP_URL_IMPORT_ENABLED", True)
# Django's request-body limit, in bytes, for everything but uploaded files.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024, minimum=0)
# Uploads above this many bytes are streamed to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024, minimum=0)
# Files in one multipart request.
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 1000, minimum=1)
FILE_UPLOAD_PERMISSIONS = 0o640

# --- REST API ---------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "emoloop.token_auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "emoloop.api_base.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "emoloop.api_base.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["labelling.filters.StrictFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Views name their throttles: PredictView (PredictThrottle), the API schema
    # (AnonThrottle). Not DEFAULT_THROTTLE_CLASSES: emoloop.auth imports DRF's views, so
    # naming its classes here is an import cycle. Anonymous calls to the other endpoints are
    # refused by the permission check, which runs before any throttle.
    "DEFAULT_THROTTLE_RATES": {
        # Anonymous requests (the API schema) per client address.
        "anon": env_str("EMOLOOP_ANON_RATE", "60/min"),
        # Predict API calls per user.
        "predict": env_str("EMOLOOP_PREDICT_RATE", "30/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "EmoLoop API",
    "DESCRIPTION": "Speech-emotion datasets and models built together: projects, feelings-wheel "
    "taxonomies, clips, annotations and imports.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Celery -----------------------------------------------------------------------------
# redis://host:port/db in production and tests; kombu's filesystem transport for `make run`.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_SPOOL = DATA_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport needs its folders to exist and a control folder that is
    # not the current directory.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_SPOOL / "queue"),
        "data_folder_out": str(CELERY_BROKER_SPOOL / "queue"),
        "control_folder": str(CELERY_BROKER_SPOOL / "control"),
        "store_processed": False,
    }
else:
    # A message a worker took (acks_late) but never acknowledged, because its host died, goes
    # back to the queue this long after delivery (kombu's Redis transport; a live worker
    # restores it) — also while a live worker is still running it. The default outlasts the
    # hard time limit of every task that does not claim its row (ingest items, feature and
    # rescoring chunks, storage measurement: 1,800 s), so those never run twice at once;
    # training runs, dataset builds and conversions may outlast it and are claimed with a
    # compare-and-set, so a second delivery of them does nothing (docs/deploying.md,
    # "Topology"; tests/test_task_routes.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 1860, minimum=5)
    }
# Where task results are kept (Redis in production; SQLite under the data folder otherwise).
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND", f"db+sqlite:///{DATA_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Default hard and soft time limits of a task, in seconds (training runs, dataset builds and
# conversions have their own). Below the broker's visibility timeout: see above.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 1800, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 1740, minimum=1)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Named queues by kind of work, so that hosts are sized per kind (docs/deploying.md,
# "Topology"). `make run`'s worker and the test suite's consume all EMOLOOP_WORKER_QUEUES.
CELERY_TASK_ROUTES = {
    "learner.tasks.train_*": {"queue": "training"},
    "labelling.tasks.ingest_item": {"queue": "ingest"},
    "learner.tasks.compute_features": {"queue": "ingest"},
    "learner.tasks.rescore_project": {"queue": "rescoring"},
    "learner.tasks.score_chunk": {"queue": "rescoring"},
    "learner.tasks.finish_ranking": {"queue": "rescoring"},
    "learner.tasks.ranking_failed": {"queue": "rescoring"},
}
EMOLOOP_WORKER_QUEUES = ("default", "ingest", "training", "rescoring")
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "reclaim-expired-leases": {
        "task": "labelling.tasks.reclaim_expired_leases",
        "schedule": 30.0,
    },
    "learner-schedule-training": {"task": "learner.tasks.schedule_training", "schedule": 60.0},
    "learner-backfill-features": {"task": "learner.tasks.backfill_features", "schedule": 60.0},
    "learner-reap-training-runs": {"task": "learner.tasks.reap_training_runs", "schedule": 120.0},
    # Work saved while the broker was down is sent on the next tick (also lost messages).
    "redispatch-stalled-imports": {
        "task": "labelling.tasks.redispatch_stalled_imports",
        "schedule": 30.0,
    },
    "learner-dispatch-pending": {"task": "learner.tasks.dispatch_pending", "schedule": 30.0},
    # Storage usage for the operations page (walking MEDIA_ROOT is too slow for a request).
    "ops-measure-storage": {"task": "ops.tasks.measure_storage", "schedule": 600.0},
    # Dataset versions whose build worker died are failed (exports.services.build).
    "exports-reap-stale-builds": {"task": "exports.tasks.reap_stale_builds", "schedule": 300.0},
}
# Operations (ops/): /readyz wants a worker heartbeat (sent every 2 s) at most this old, and
# the operations page waits this long for workers to answer an inspect broadcast.
OPS_HEARTBEAT_FRESH_SECONDS = 30
OPS_INSPECT_TIMEOUT_SECONDS = 1.0
# /readyz: each check's time limit, and how long a process reuses its last answer (a probe
# storm costs one round of checks per process per interval).
OPS_READYZ_TIMEOUT_SECONDS = 2.0
OPS_READYZ_CACHE_SECONDS = 3.0
# Import items still pending this long after their batch started are sent again.
# (Longer than ingest_item's time limit, so a long recording still being cut is not sent
# to a second worker.)
EMOLOOP_IMPORT_STALL_SECONDS = env_int("EMOLOOP_IMPORT_STALL_SECONDS", 1800, minimum=1)

# --- Learner (read through learner/conf.py's accessors) -----------------------------------
# Local path of a wav2vec 2.0 / HuBERT / WavLM checkpoint; empty turns the ssl feature set off.
# Never downloaded: the file must be on the machine (learner/features/ssl.py).
EMOLOOP_SSL_CHECKPOINT = env_str("EMOLOOP_SSL_CHECKPOINT", "")
# Architecture of a bare state-dict checkpoint: wav2vec2_base, hubert_base or wavlm_base.
EMOLOOP_SSL_ARCH = env_str("EMOLOOP_SSL_ARCH", "wav2vec2_base")
# A running training whose heartbeat is older than this (seconds) is taken for dead.
EMOLOOP_TRAINING_STALE_SECONDS = env_int("EMOLOOP_TRAINING_STALE_SECONDS", 300, minimum=10)
# A training still queued after this long (seconds) is sent to the broker again.
EMOLOOP_TRAINING_REDISPATCH_SECONDS = env_int(
    "EMOLOOP_TRAINING_REDISPATCH_SECONDS", 600, minimum=10
)
# Hard time limit of one training task, in seconds; the soft limit is 60 s less.
EMOLOOP_TRAINING_TIME_LIMIT = env_int("EMOLOOP_TRAINING_TIME_LIMIT", 3 * 3600, minimum=120)
# Clips per feature-extraction task.
EMOLOOP_FEATURE_CHUNK = env_int("EMOLOOP_FEATURE_CHUNK", 50, minimum=1)
# Clips per rescoring chunk task (learner.services.rescoring).
EMOLOOP_RESCORE_CHUNK = env_int("EMOLOOP_RESCORE_CHUNK", 2000, minimum=1)
# Torch threads for training and feature extraction. One is fastest for these small
# networks on shared cores, and keeps runs bit-for-bit reproducible.
EMOLOOP_TRAINING_THREADS = env_int("EMOLOOP_TRAINING_THREADS", 1, minimum=1)

# --- Logs and metrics (docs/deploying.md, "Health, logs and metrics") -------------------
# json: one JSON object per line (request_id, task_id, task_name on each); text: one line
# per record for a terminal. Default: text in development (EMOLOOP_DEV/DEBUG), else json.
EMOLOOP_LOG_FORMAT = env_str("EMOLOOP_LOG_FORMAT", "text" if DEBUG or DEV_MODE else "json")
if EMOLOOP_LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(
        f"EMOLOOP_LOG_FORMAT must be json or text, not {EMOLOOP_LOG_FORMAT!r}"
    )
# DEBUG, INFO, WARNING, ERROR or CRITICAL.
LOGGING = logging_config(EMOLOOP_LOG_FORMAT, env_str("LOG_LEVEL", "INFO"))
# Workers keep this LOGGING (and its request and task ids) instead of Celery's own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# /metrics answers only `Authorization: Bearer <this>`; empty (the default): /metrics is off.
EMOLOOP_METRICS_TOKEN = env_str("EMOLOOP_METRICS_TOKEN", "")
# prometheus-client's own variable: an empty folder, per host, where each gunicorn process
# writes its metrics so that a scrape sums them (empty: one process's metrics only).
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", "")
# A scrape waits this long for the broker's queue lengths.
OPS_METRICS_SOURCE_TIMEOUT_SECONDS = 2.0
# The storage usage measurement (ops.services.storage) stops after this many files.
OPS_STORAGE_MAX_OBJECTS = 5_000_000
