"""Settings: every knob comes from the environment (the README lists them all).

The defaults run on a laptop with nothing installed: SQLite, an in-process cache and a
filesystem broker in DATA_DIR. Production sets DATABASE_URL and REDIS_URL.
"""

import os
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_decimal(name: str, default: str) -> Decimal:
    raw = env_str(name) or default
    try:
        return Decimal(raw)
    except ArithmeticError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


DEBUG = env_bool("DEBUG", False)
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data"))).resolve()


def _data_dir_writable() -> bool:
    try:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(DATA_DIR, os.W_OK)


def generated_secret(name: str, make) -> str:
    """The secret from the environment, else one generated once into DATA_DIR and reused."""
    given = env_str(name)
    if given:
        return given
    path = DATA_DIR / name.lower()
    if path.exists():
        return path.read_text().strip()
    if not _data_dir_writable():
        raise ImproperlyConfigured(
            f"{name} is not set and DATA_DIR ({DATA_DIR}) is not writable to generate one"
        )
    value = make()
    # O_EXCL: two processes starting together must not write different secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def _new_fernet_key() -> str:
    return Fernet.generate_key().decode()


SECRET_KEY = generated_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))
ENCRYPTION_KEYS = [
    k.strip()
    for k in generated_secret("ENCRYPTION_KEYS", _new_fernet_key).split(",")
    if k.strip()
]

HOST = env_str("HOST", "127.0.0.1")
PORT = env_int("PORT", 8000)
REDIS_URL = env_str("REDIS_URL")
WEB_CONCURRENCY = env_int("WEB_CONCURRENCY", 1)
if WEB_CONCURRENCY > 1 and not REDIS_URL:
    # Each web process would keep its own spend counters: every hard limit would silently
    # become a per-process limit.
    raise ImproperlyConfigured(
        f"WEB_CONCURRENCY={WEB_CONCURRENCY} needs REDIS_URL: without Redis each web process keeps its own "
        "spend counters and rate limits, so limits would be per process. Set REDIS_URL, or WEB_CONCURRENCY=1."
    )
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "*").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()
]
# Browser origins allowed to call /v1 (API-key auth, never cookies): "*" or a comma-separated list.
CORS_ALLOWED_ORIGINS = [o.strip().rstrip("/") for o in env_str("CORS_ALLOWED_ORIGINS", "*").split(",") if o.strip()]
# GET /metrics (gateway/metrics.py): with a token, `Authorization: Bearer <token>`; without, loopback clients only.
METRICS_TOKEN = env_str("METRICS_TOKEN")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "template_partials",
    "core",
    "gateway",
    "projects",
    "apikeys",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

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
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and the Celery worker share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory: the gateway and Celery processes that tests start must see it.
    # One per test run, so that runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-db-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "projects.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "llmgw"),
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery: Redis when given, else a broker in plain files under DATA_DIR so that
# `make run` needs nothing installed.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _d in ("queue", "processed", "control"):
        if _data_dir_writable():
            (_broker_dir / _d).mkdir(parents=True, exist_ok=True)
if CELERY_BROKER_URL.startswith("redis"):
    # A task a killed worker held comes back after this long (it is safe to run twice);
    # the sweep that brings it back runs every few seconds instead of kombu's 100.
    _visibility = env_int("CELERY_VISIBILITY_TIMEOUT", 60)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": _visibility,
        "unacked_restore_interval": min(10, _visibility),
        "unacked_restore_throttle": 1,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection before and after every task, whatever
# CONN_MAX_AGE says: a new PostgreSQL session per usage batch. This keeps it for this many
# tasks; config/celery.py drops it earlier when it is broken or older than CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_TOKEN_TTL_DAYS = env_int("SESSION_TOKEN_TTL_DAYS", 30)
LOGIN_URL = "/login/"
# Failed sign-ins (the API, the dashboard and the admin alike) are counted by django-axes per
# account and client address together, so a stranger cannot lock an account's owner out.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_FORM_FIELD = "email"
AXES_USERNAME_CALLABLE = "projects.auth.axes_username"
AXES_LOCKOUT_CALLABLE = "projects.auth.lockout_response"
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "static"  # only for `collectstatic`; WhiteNoise reads the apps' folders
if _data_dir_writable():
    STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve static files straight from the apps' folders: no collectstatic step in `make run`.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "projects.auth.SessionTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.rest.JSONParser"],
    "EXCEPTION_HANDLER": "core.rest.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.schema.Schema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%SZ",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM Gateway management API",
    "DESCRIPTION": "Organizations, projects, API keys, provider keys and usage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ProjectStatusEnum": "projects.models.Project.Status",
        "OrganizationStatusEnum": "projects.models.Organization.Status",
        # API keys, IAM rules and provider keys share active/inactive.
        "ActiveInactiveEnum": "apikeys.models.ApiKey.Status",
        "InvitationStatusEnum": [("pending", "pending"), ("accepted", "accepted"), ("expired", "expired")],
    },
}

# Product rules.
PROJECT_LIMIT = env_int("PROJECT_LIMIT", 10)
CREDIT_FEE_PERCENT = env_decimal("CREDIT_FEE_PERCENT", "5")
ALLOW_PRIVATE_PROVIDER_URLS = env_bool("ALLOW_PRIVATE_PROVIDER_URLS", False)
PROVIDER_VALIDATION_TIMEOUT = float(env_str("PROVIDER_VALIDATION_TIMEOUT", "10"))

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gateway@localhost")

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)


def secure_cookies() -> bool:
    """SECURE_COOKIES: `true`/`false` force it; `auto` (the default) makes cookies Secure only
    when the site is configured for HTTPS (SECURE_SSL_REDIRECT, or CSRF_TRUSTED_ORIGINS all
    https). A browser drops Secure cookies on plain HTTP anywhere but loopback, so forcing
    them would make sign-in fail on http://<lan-address>:8000."""
    raw = env_str("SECURE_COOKIES", "auto").lower()
    if raw not in ("auto", "true", "false"):
        raise ImproperlyConfigured(f"SECURE_COOKIES must be auto, true or false, not {raw!r}")
    if raw != "auto":
        return raw == "true"
    https_origins = bool(CSRF_TRUSTED_ORIGINS) and all(o.lower().startswith("https://") for o in CSRF_TRUSTED_ORIGINS)
    return SECURE_SSL_REDIRECT or https_origins


SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = secure_cookies()
CSRF_FAILURE_VIEW = "core.views.csrf_failure"
# W008: HTTP → HTTPS redirects belong to the proxy in front (SECURE_SSL_REDIRECT opts in).
# W021: HSTS preload is a commitment for the operator's domain, not a default.
SILENCED_SYSTEM_CHECKS = ["security.W008", "security.W021"]
if not SESSION_COOKIE_SECURE:
    # W012, W016: a site served over plain HTTP (SECURE_COOKIES=auto saw no HTTPS settings)
    # cannot use Secure cookies; docs/deploy.md says how to configure HTTPS.
    SILENCED_SYSTEM_CHECKS += ["security.W012", "security.W016"]
if not DEBUG:
    # Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)  # sent on HTTPS answers only
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)

# Logs (core/logs.py): text by default, LOG_FORMAT=json for one JSON object per line. Either
# way a line carries the ids of the request (or usage record) it is about, and anything that
# looks like a key is cut out of it. The Celery worker and beat log through this too
# (config/celery.py).
LOG_FORMAT = env_str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logs.ContextFilter"}, "redact": {"()": "core.logs.RedactFilter"}},
    "formatters": {"text": {"()": "core.logs.TextFormatter"}, "json": {"()": "core.logs.JsonFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context", "redact"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # uvicorn's own lines. Not "uvicorn": configuring it would turn its access log (a child,
        # off in bin/run: it costs on every request) back on.
        "uvicorn.error": {"handlers": ["console"], "propagate": False},
    },
}

# Error reports (core/sentry.py): only with SENTRY_DSN, else sentry-sdk is never imported.
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT")
SENTRY_RELEASE = env_str("SENTRY_RELEASE")
if SENTRY_DSN:
    from core.sentry import init as init_sentry

    init_sentry(SENTRY_DSN, environment=SENTRY_ENVIRONMENT, release=SENTRY_RELEASE)

# Upstream providers: <PROVIDER>_BASE_URL overrides the public URL, <PROVIDER>_API_KEY is
# the gateway's own key (used when credits pay).
from gateway.providers import PROVIDERS  # noqa: E402

PROVIDER_BASE_URLS = {
    p.id: env_str(f"{p.env_prefix}_BASE_URL", p.base_url).rstrip("/") for p in PROVIDERS.values()
}
PROVIDER_API_KEYS = {
    p.id: env_str(f"{p.env_prefix}_API_KEY") for p in PROVIDERS.values() if p.id != "custom"
}

# The gateway (/v1): timeouts in seconds, sizes in bytes.
UPSTREAM_CONNECT_TIMEOUT = float(env_str("UPSTREAM_CONNECT_TIMEOUT", "5"))
UPSTREAM_FIRST_BYTE_TIMEOUT = float(env_str("UPSTREAM_FIRST_BYTE_TIMEOUT", "120"))
UPSTREAM_IDLE_TIMEOUT = float(env_str("UPSTREAM_IDLE_TIMEOUT", "60"))
UPSTREAM_MAX_RETRIES = env_int("UPSTREAM_MAX_RETRIES", 2)
UPSTREAM_MAX_RESPONSE_BYTES = env_int("UPSTREAM_MAX_RESPONSE_BYTES", 32 * 1024 * 1024)
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 10 * 1024 * 1024)
GATEWAY_SNAPSHOT_TTL = float(env_str("GATEWAY_SNAPSHOT_TTL", "10"))
USAGE_LOG_FLUSH_SECONDS = float(env_str("USAGE_LOG_FLUSH_SECONDS", "0.2"))
# Usage ingestion (usage/stream.py): a batch is what the stream holds plus what comes within
# USAGE_INGEST_BATCH_SECONDS, up to USAGE_INGEST_BATCH records.
USAGE_INGEST_BATCH = env_int("USAGE_INGEST_BATCH", 2000)
USAGE_INGEST_BATCH_SECONDS = float(env_str("USAGE_INGEST_BATCH_SECONDS", "0.25"))
# A spend reservation lives this long unless its process renews it (every third of it): a
# process killed mid-request holds nobody's limit for longer.
GATEWAY_HOLD_SECONDS = float(env_str("GATEWAY_HOLD_SECONDS", "60"))
# Health (gateway/health.py), shared by every gateway process through Redis when it is set.
# An organization's provider key refused (401/403) this many times in a row is marked invalid
# (0: never). A provider that fails (no connection, a timeout, a 5xx) GATEWAY_COOLDOWN_FAILURES
# times within GATEWAY_COOLDOWN_WINDOW seconds is tried last, for GATEWAY_COOLDOWN_SECONDS, by
# requests for a model several providers serve (0 failures: never).
GATEWAY_KEY_REJECTIONS = env_int("GATEWAY_KEY_REJECTIONS", 3)
GATEWAY_COOLDOWN_FAILURES = env_int("GATEWAY_COOLDOWN_FAILURES", 5)
GATEWAY_COOLDOWN_WINDOW = float(env_str("GATEWAY_COOLDOWN_WINDOW", "30"))
GATEWAY_COOLDOWN_SECONDS = float(env_str("GATEWAY_COOLDOWN_SECONDS", "30"))
