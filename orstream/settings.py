"""orstream settings: every variable read from the environment next to its default.

Nothing set gives the embedded default (SQLite under var/, in-memory channel layer, eager Celery,
e-mail as files under var/mail, files under var/media, one edge on 127.0.0.1). ORSTREAM_PROFILE=production demands
PostgreSQL and Redis and stops start-up naming the first missing variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from orstream.env import env_bool, env_float, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ORSTREAM_VAR_DIR", BASE_DIR / "var"))


# One set of helpers for the site and the edge (orstream/env.py): a typo in a boolean or a
# number stops start-up naming the variable instead of becoming its default.
env = env_str


PROFILE = env("ORSTREAM_PROFILE", "embedded")
if PROFILE not in {"embedded", "production"}:
    raise ImproperlyConfigured(f"ORSTREAM_PROFILE must be 'embedded' or 'production', not {PROFILE!r}")
PRODUCTION = PROFILE == "production"


def required(name: str, value: str) -> str:
    if PRODUCTION and not value:
        raise ImproperlyConfigured(f"{name} must be set when ORSTREAM_PROFILE=production")
    return value


# Variables the production profile cannot start without (docker-compose.yml is checked against this).
PRODUCTION_REQUIRED = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "ALLOWED_HOSTS",
    "ORSTREAM_EDGE_URL",
    "ORSTREAM_EDGE_SECRET",
    "ORSTREAM_PUBLIC_URL",
)

SECRET_KEY = required("SECRET_KEY", env_secret("SECRET_KEY")) or "embedded-demo-key-not-for-production-use-0123456789"
DEBUG = env_bool("DEBUG", not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
required("ALLOWED_HOSTS", ",".join(ALLOWED_HOSTS))
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
# Public base URL used in invitations and join links.
PUBLIC_URL = required("ORSTREAM_PUBLIC_URL", env("ORSTREAM_PUBLIC_URL", "" if PRODUCTION else "http://127.0.0.1:8000"))

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "mentoring",
    "consent",
    "recordings",
    "training",
    "hospital",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A strict Content-Security-Policy on every response, in both profiles (orstream/csp.py).
    "orstream.csp.ContentSecurityPolicyMiddleware",
    # Static files straight from the ASGI server, in the demo and in production alike.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orstream.urls"
ASGI_APPLICATION = "orstream.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

_default_db = f"sqlite:///{VAR_DIR / 'orstream.sqlite3'}"
DATABASE_URL = required("DATABASE_URL", env("DATABASE_URL", "" if PRODUCTION else _default_db))
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default writes from several threads at once (requests, consumers, the edge's
    # webhooks). A transaction that reads before it writes, as the audit chain does, must take the
    # write lock when it begins: SQLite refuses its later upgrade at once with "database is
    # locked" when another thread wrote in between. Begun IMMEDIATE, it waits for the lock instead;
    # WAL lets readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = required("REDIS_URL", env("REDIS_URL"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py reads with a 5 s socket timeout by default, exactly the time channels_redis
                # blocks in BZPOPMIN waiting for a message: an idle socket's poll then fails and kills
                # the consumer (the page's WebSocket drops every few seconds). Read longer than a poll.
                "hosts": [{"address": REDIS_URL, "socket_timeout": env_int("ORSTREAM_REDIS_SOCKET_TIMEOUT", 30)}],
                "prefix": env("ORSTREAM_CHANNEL_PREFIX", "orstream"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "orstream.layers.InMemoryChannelLayer"}}

# Counters for sign-in throttling and aggregated refusals: shared by every site process through
# Redis in production; one process's memory in the embedded default (one site process there).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache" if REDIS_URL else "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": REDIS_URL or "orstream",
        "KEY_PREFIX": env("ORSTREAM_CHANNEL_PREFIX", "orstream"),
    }
}

# With no Redis the jobs run eagerly; a named host keeps kombu from warning on every job.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Archive encodes take CPU-minutes per chunk: they have a queue and workers of their own
# (`worker -Q archive`), so an export, a finalize or a withdrawal never waits behind one.
ARCHIVE_QUEUE = "archive"
CELERY_TASK_ROUTES = {"recordings.tasks.archive_*": {"queue": ARCHIVE_QUEUE}}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in throttling (orstream.signin): failures per account and per client address in a window.
LOGIN_FAILURES_PER_ACCOUNT = env_int("ORSTREAM_LOGIN_FAILURES_PER_ACCOUNT", 5)
LOGIN_FAILURES_PER_ADDRESS = env_int("ORSTREAM_LOGIN_FAILURES_PER_ADDRESS", 20)
LOGIN_WINDOW_MINUTES = env_int("ORSTREAM_LOGIN_WINDOW_MINUTES", 15)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "mentoring:session_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
# Recordings, thumbnails and exports' sources: the local filesystem (MEDIA_ROOT), or an
# S3-compatible object store (AWS, MinIO, Ceph...) when ORSTREAM_S3_BUCKET is set.
S3_BUCKET = env("ORSTREAM_S3_BUCKET")
DEFAULT_STORAGE: dict[str, object] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if S3_BUCKET:
    DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env("ORSTREAM_S3_ENDPOINT_URL") or None,
            "region_name": env("ORSTREAM_S3_REGION") or None,
            "access_key": env_secret("ORSTREAM_S3_ACCESS_KEY") or None,
            "secret_key": env_secret("ORSTREAM_S3_SECRET_KEY") or None,
            # Recordings are clinical records: private objects, reached only through orstream.
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": 300,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("ORSTREAM_STATIC_MANIFEST", PRODUCTION)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Without collectstatic (the embedded demo, tests), serve from the apps' static folders.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"

# The embedded demo writes e-mails to files under var/mail, not to the console: an invitation
# carries a join link, and nothing secret may reach the server's output.
EMAIL_BACKEND = env(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION else "django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = Path(env("EMAIL_FILE_PATH", str(VAR_DIR / "mail")))
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "orstream <orstream@localhost>")

# Edge: the media plane the control plane drives over signed HTTP.
EDGE_URL = required("ORSTREAM_EDGE_URL", env("ORSTREAM_EDGE_URL", "" if PRODUCTION else "http://127.0.0.1:8010"))
EDGE_SECRET = required("ORSTREAM_EDGE_SECRET", env_secret("ORSTREAM_EDGE_SECRET")) or "embedded-edge-secret"
EDGE_TIMEOUT = float(env("ORSTREAM_EDGE_TIMEOUT", "10"))
# Where to reach the control plane from the edge for webhooks.
EDGE_WEBHOOK_PATH = "/edge/events/"

# Join tokens and invitations.
JOIN_TOKEN_MAX_AGE_HOURS = env_int("ORSTREAM_JOIN_TOKEN_MAX_AGE_HOURS", 24)
SPECIALIST_LINK_MAX_MINUTES = env_int("ORSTREAM_SPECIALIST_LINK_MAX_MINUTES", 120)

# Recordings: the spool the edges write segments to (shared with the control plane), the folders
# exports may write to (network shares, removable media mount points), retention in days, and a
# pause between files when erasing so a large erasure does not starve a live recorder's disk.
RECORDINGS_SPOOL_DIR = Path(env("ORSTREAM_RECORDINGS_SPOOL_DIR", str(VAR_DIR / "spool")))
EXPORT_DESTINATIONS = env_list("ORSTREAM_EXPORT_DESTINATIONS", "")
RETENTION_DAYS = env_int("ORSTREAM_RETENTION_DAYS", 3650)
RETENTION_TRAINING_DAYS = env_int("ORSTREAM_RETENTION_TRAINING_DAYS", 5 * 365)
RETENTION_RESEARCH_DAYS = env_int("ORSTREAM_RETENTION_RESEARCH_DAYS", 10 * 365)
RECORDINGS_ERASE_PAUSE_SECONDS = float(env("ORSTREAM_RECORDINGS_ERASE_PAUSE_SECONDS", "0"))
# The sweep (Celery beat, every minute) looks at recordings still finalizing this long after they
# stopped, rebuilds their segments from the spool, and reports as failed those stuck this long.
RECORDINGS_SWEEP_GRACE_SECONDS = env_int("ORSTREAM_RECORDINGS_SWEEP_GRACE_SECONDS", 60)
RECORDINGS_STUCK_MINUTES = env_int("ORSTREAM_RECORDINGS_STUCK_MINUTES", 30)
# One viewing of a recording (one audit event) lasts while its player keeps asking for bytes with
# pauses no longer than this (recordings.models.Viewing).
RECORDING_VIEWING_IDLE_MINUTES = env_int("ORSTREAM_RECORDING_VIEWING_IDLE_MINUTES", 30)

# Long-term archive (recordings.services.archive): a recompressed copy at full resolution and frame rate with
# the sound, AV1 in MP4 (Chromium plays it) or HEVC (the DICOM export of 4K). The recording is cut
# at its keyframes into chunks of about ARCHIVE_CHUNK_SECONDS, one Celery task each, each encode
# on ARCHIVE_THREADS threads (workers, not threads, spread the work). The CRF is chosen per
# recording (ARCHIVE_CRF_SEARCH): ARCHIVE_SEARCH_SAMPLES samples of ARCHIVE_SEARCH_SAMPLE_SECONDS
# from keyframes, encoded at 2-3 CRFs from the codec's CRF within its CRF_MIN..CRF_MAX, give the
# highest CRF predicted to reach the thresholds plus ARCHIVE_SEARCH_MARGIN. A chunk whose VMAF is
# below the per-chunk threshold (the mean threshold when the search is off) is encoded once more
# ARCHIVE_RETRY_CRF_STEP lower; the copy is accepted when its VMAF mean and every chunk's reach the
# thresholds, and the originals go ARCHIVE_KEEP_ORIGINAL_DAYS after. Where no CRF in range makes
# the copy smaller than the original, the original is kept as the archive.
# With workers (not eager) a recording is archived once it is stored; ARCHIVE_AUTO says otherwise.
ARCHIVE_AUTO = env_bool("ORSTREAM_ARCHIVE_AUTO", not CELERY_TASK_ALWAYS_EAGER)
ARCHIVE_CODEC = env("ORSTREAM_ARCHIVE_CODEC", "av1")
ARCHIVE_AV1_PRESET = env("ORSTREAM_ARCHIVE_AV1_PRESET", "8")
ARCHIVE_AV1_CRF = env_int("ORSTREAM_ARCHIVE_AV1_CRF", 20)
ARCHIVE_HEVC_PRESET = env("ORSTREAM_ARCHIVE_HEVC_PRESET", "fast")
ARCHIVE_HEVC_CRF = env_int("ORSTREAM_ARCHIVE_HEVC_CRF", 22)
ARCHIVE_CRF_SEARCH = env_bool("ORSTREAM_ARCHIVE_CRF_SEARCH", True)
ARCHIVE_AV1_CRF_MIN = env_int("ORSTREAM_ARCHIVE_AV1_CRF_MIN", 6)
ARCHIVE_AV1_CRF_MAX = env_int("ORSTREAM_ARCHIVE_AV1_CRF_MAX", 50)
ARCHIVE_HEVC_CRF_MIN = env_int("ORSTREAM_ARCHIVE_HEVC_CRF_MIN", 8)
ARCHIVE_HEVC_CRF_MAX = env_int("ORSTREAM_ARCHIVE_HEVC_CRF_MAX", 40)
ARCHIVE_SEARCH_SAMPLES = env_int("ORSTREAM_ARCHIVE_SEARCH_SAMPLES", 3)
ARCHIVE_SEARCH_SAMPLE_SECONDS = env_float("ORSTREAM_ARCHIVE_SEARCH_SAMPLE_SECONDS", 1.0)
ARCHIVE_SEARCH_MARGIN = env_float("ORSTREAM_ARCHIVE_SEARCH_MARGIN", 1.0)
ARCHIVE_RETRY_CRF_STEP = env_int("ORSTREAM_ARCHIVE_RETRY_CRF_STEP", 6)
ARCHIVE_CHUNK_SECONDS = env_float("ORSTREAM_ARCHIVE_CHUNK_SECONDS", 30.0)
ARCHIVE_THREADS = env_int("ORSTREAM_ARCHIVE_THREADS", 1)
ARCHIVE_VMAF_MEAN_MIN = env_float("ORSTREAM_ARCHIVE_VMAF_MEAN_MIN", 95.0)
ARCHIVE_VMAF_CHUNK_MIN = env_float("ORSTREAM_ARCHIVE_VMAF_CHUNK_MIN", 90.0)
ARCHIVE_KEEP_ORIGINAL_DAYS = env_int("ORSTREAM_ARCHIVE_KEEP_ORIGINAL_DAYS", 30)
# Hospital integration (PACS, worklist, MPPS, FHIR): the servers themselves are configured in the
# admin; nothing set leaves them all off. Patient identifiers taken from the worklist are sealed
# with ORSTREAM_HOSPITAL_KEY (a Fernet key; derived from SECRET_KEY when unset, which a production
# site should not rely on: rotating SECRET_KEY would make them unreadable). The FHIR client's
# assertion is signed with ORSTREAM_FHIR_PRIVATE_KEY (PEM, RS384 or ES384).
HOSPITAL_KEY = env_secret("ORSTREAM_HOSPITAL_KEY")
FHIR_PRIVATE_KEY = env_secret("ORSTREAM_FHIR_PRIVATE_KEY")
FHIR_ASSERTION_ALGORITHM = env_str("ORSTREAM_FHIR_ASSERTION_ALGORITHM", "RS384")
# Video stored in one DICOM instance at most (one fragment; H.264 syntaxes allow up to ~4 GB).
HOSPITAL_DICOM_MAX_FRAGMENT_BYTES = env_int("ORSTREAM_DICOM_MAX_FRAGMENT_BYTES", 4_000_000_000)
HOSPITAL_DICOM_TIMEOUT_SECONDS = env_int("ORSTREAM_DICOM_TIMEOUT_SECONDS", 30)
# Where the export writes its working files (pseudonymous names only); removed when done.
HOSPITAL_INSTITUTION_NAME = env_str("ORSTREAM_INSTITUTION_NAME", "")
# What a DocumentReference becomes in the EHR when its recording is erased or restricted.
FHIR_WITHDRAWN_STATUS = env_str("ORSTREAM_FHIR_WITHDRAWN_STATUS", "entered-in-error")
if FHIR_WITHDRAWN_STATUS not in ("entered-in-error", "superseded"):
    raise ImproperlyConfigured(
        f"ORSTREAM_FHIR_WITHDRAWN_STATUS must be 'entered-in-error' or 'superseded', not {FHIR_WITHDRAWN_STATUS!r}"
    )
HOSPITAL_WORK_DIR = Path(env("ORSTREAM_HOSPITAL_WORK_DIR", str(VAR_DIR / "hospital")))

# TURN: coturn's REST API (time-limited credentials derived from a shared secret).
TURN_URLS = env_list("ORSTREAM_TURN_URLS", "")
TURN_SECRET = env_secret("ORSTREAM_TURN_SECRET")
TURN_TTL_SECONDS = env_int("ORSTREAM_TURN_TTL_SECONDS", 3600)

# WebSocket limits: frames above this size get close code 4009; this many bad frames close with 4400.
WS_MAX_FRAME_BYTES = env_int("ORSTREAM_WS_MAX_FRAME_BYTES", 64 * 1024)
WS_MAX_BAD_FRAMES = env_int("ORSTREAM_WS_MAX_BAD_FRAMES", 5)
# Frames a socket may have waiting for its consumer (orstream/wsinbox.py): a person's page never
# gets near them; a flood that does is closed (4429) instead of growing the server's memory.
WS_MAX_QUEUED_FRAMES = env_int("ORSTREAM_WS_MAX_QUEUED_FRAMES", 64)
WS_MAX_QUEUED_BYTES = env_int("ORSTREAM_WS_MAX_QUEUED_BYTES", 2 * 1024 * 1024)
# Connections one participant may open in a minute: budgets are per connection, so a flood that
# reconnects each time it is cut off is refused here (a page reconnects a few times at most).
WS_JOINS_PER_MINUTE = env_int("ORSTREAM_WS_JOINS_PER_MINUTE", 12)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # The refusals DRF replies to (no sign-in, a permission class, a view's PermissionDenied) are
    # audited like a refusal page, through the same hook.
    "EXCEPTION_HANDLER": "orstream.pages.api_exception_handler",
    # The browsable API without its inline style: every page keeps the Content-Security-Policy.
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "orstream.csp.BrowsableAPIRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "orstream API",
    "DESCRIPTION": "Scheduling, invitations, join tokens, consent and recordings for OR telementoring.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs' viewer comes from the sidecar package's static files, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Health checks come over plain HTTP from inside the stack.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds the hospital's whole domain to HTTPS in browsers for good: the domain's
        # owner opts in with SECURE_HSTS_PRELOAD=true, orstream does not decide it for them.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"redact_join_tokens": {"()": "orstream.logfilters.RedactJoinTokens"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_join_tokens"]}
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        # Replaces Django's own console handler, which would print request paths unfiltered.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.channels.server": {"level": "WARNING"},
    },
}
