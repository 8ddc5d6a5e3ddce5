"""Memcloud settings: the only module that reads the environment (docs/api.md §1)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, "") or default


def env_int(name: str, default: int | None, *, minimum: int = 0) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be >= {minimum}, got {value}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_networks(name: str, default: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128)."""
    raw = os.environ.get(name, "").strip()
    items = [part.strip() for part in raw.split(",") if part.strip()] if raw else list(default)
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in items)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be comma-separated CIDRs: {exc}") from None


DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off")
    # Dev only: a per-process key would break sessions across workers, so keep one on disk.
    _key_file = BASE_DIR / ".dev-secret-key"
    if not _key_file.exists():
        _key_file.write_text(get_random_secret_key())
    SECRET_KEY = _key_file.read_text().strip()

ALLOWED_HOSTS = [h.strip() for h in env_str("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]

# --- HTTPS behind the ingress (docs/deploy.md, "HTTPS") ---
# TLS ends at the ingress, which sets X-Forwarded-Proto on every request it forwards (and
# overwrites a client's): Django then knows the original scheme, for CSRF's origin checks.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Cookies only over HTTPS in production; dev (`make run`) serves plain HTTP on loopback.
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS: a year in production, off in development (a browser would then refuse http://localhost).
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
# The redirect to HTTPS is the ingress's job (ingress-nginx redirects whenever the host has TLS):
# here it would also redirect the kubelet's plain-HTTP probes and in-cluster scrapes.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
# security.W008 says "SECURE_SSL_REDIRECT is off"; silenced only while it is, because the ingress
# redirects instead (above). Turning the redirect on brings the check back.
SILENCED_SYSTEM_CHECKS = [] if SECURE_SSL_REDIRECT else ["security.W008"]

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
    "django_prometheus",
    "core",
    "tenants",
    "episodes",
    "ops",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "memcloud.middleware.RequestLogMiddleware",
    "core.middleware.MetricsMiddleware",
    "memcloud.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "memcloud.middleware.JsonExceptionMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "memcloud.urls"
WSGI_APPLICATION = "memcloud.wsgi.application"
APPEND_SLASH = False
# A refused CSRF check (an unsafe method on a non-API path such as /health) answers JSON, not Django's page.
CSRF_FAILURE_VIEW = "core.http.csrf_failure"

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

# Database: DATABASE_URL selects PostgreSQL; unset means a SQLite file (dev only).
_db_url = env_str("DATABASE_URL")
if _db_url:
    DATABASES = {
        "default": dj_database_url.parse(_db_url, conn_max_age=600, conn_health_checks=True)
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # WAL lets several gunicorn workers read while one writes; IMMEDIATE takes the
                # write lock at BEGIN so concurrent writers queue instead of failing mid-transaction.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Django turns psycopg's prepared statements off; the hot-path statements of memcloud/db.py ask
    # for them (Django's own client-side-bound queries are never prepared either way).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
    # The same backend with a health check that needs no round trip while the socket is quiet.
    DATABASES["default"]["ENGINE"] = "core.postgres"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(BASE_DIR / "test-db.sqlite3")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
with contextlib.suppress(OSError):  # whitenoise warns about a missing root; in dev the finders serve
    STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # dev: serve app static files without collectstatic

# --- Memcloud (docs/api.md §1) ---
AGENT_MEM_API_KEY = env_str("AGENT_MEM_API_KEY")
AGENT_MEM_DIM = env_int("AGENT_MEM_DIM", 384, minimum=1)
AGENT_MEM_DATA_DIR = Path(env_str("AGENT_MEM_DATA_DIR", str(BASE_DIR / "data")))
AGENT_MEM_RATE_LIMIT = env_int("AGENT_MEM_RATE_LIMIT", None, minimum=1)
AGENT_MEM_RATE_WINDOW_SECS = env_int("AGENT_MEM_RATE_WINDOW_SECS", 60, minimum=1)
AGENT_MEM_AUDIT_LOG = env_str("AGENT_MEM_AUDIT_LOG")
AGENT_MEM_MAX_BATCH = env_int("AGENT_MEM_MAX_BATCH", 1000, minimum=1)
AGENT_MEM_MAX_BODY_BYTES = env_int("AGENT_MEM_MAX_BODY_BYTES", 33554432, minimum=1024)
AGENT_MEM_MAX_TOP_K = env_int("AGENT_MEM_MAX_TOP_K", 1000, minimum=1)
AGENT_MEM_INDEX_MEMORY_MB = env_int("AGENT_MEM_INDEX_MEMORY_MB", 1024, minimum=1)
# The host's copies of small tenants' index images (episodes/images.py), on disk under
# AGENT_MEM_DATA_DIR/images, read through the page cache; 0: none kept. Sized to hold every small
# tenant a host serves (1.65 MB per 1,000 episodes at dim 384): a copy missing means a database read.
AGENT_MEM_IMAGE_CACHE_MB = env_int("AGENT_MEM_IMAGE_CACHE_MB", 16384, minimum=0)
# The server's expiry sweep runs at most once per this many seconds across all workers; 0: never.
AGENT_MEM_EXPIRE_INTERVAL_SECS = env_int("AGENT_MEM_EXPIRE_INTERVAL_SECS", 60, minimum=0)
# Tenant embedders of the form openai:<model> (docs/api.md §2, Embedders): the provider's base URL
# (`/embeddings` is appended), its key, and how it is called.
AGENT_MEM_EMBEDDINGS_URL = env_str("AGENT_MEM_EMBEDDINGS_URL").rstrip("/")
AGENT_MEM_EMBEDDINGS_API_KEY = env_str("AGENT_MEM_EMBEDDINGS_API_KEY")
AGENT_MEM_EMBEDDINGS_TIMEOUT_SECS = env_int("AGENT_MEM_EMBEDDINGS_TIMEOUT_SECS", 10, minimum=1)
AGENT_MEM_EMBEDDINGS_BATCH = env_int("AGENT_MEM_EMBEDDINGS_BATCH", 64, minimum=1)
AGENT_MEM_EMBEDDINGS_RETRIES = env_int("AGENT_MEM_EMBEDDINGS_RETRIES", 2, minimum=0)
AGENT_MEM_EMBEDDINGS_BACKOFF_MS = env_int("AGENT_MEM_EMBEDDINGS_BACKOFF_MS", 500, minimum=0)
REDIS_URL = env_str("REDIS_URL")
# Who may read /metrics (ops/access.py): a bearer token, or source networks (the scraper's pod
# network; X-Forwarded-For is not trusted). Neither set: loopback in development, so `make run`
# users can curl it, and nobody in production.
AGENT_MEM_METRICS_TOKEN = env_str("AGENT_MEM_METRICS_TOKEN")
AGENT_MEM_METRICS_ALLOW = env_networks(
    "AGENT_MEM_METRICS_ALLOW", ("127.0.0.0/8", "::1/128") if DEBUG and not AGENT_MEM_METRICS_TOKEN else ())
# /dashboard shows its aggregates to anyone only when this is on; else staff signed in to the admin.
AGENT_MEM_PUBLIC_DASHBOARD = env_bool("AGENT_MEM_PUBLIC_DASHBOARD", False)
# The tenant tables are distributed by tenant (Citus, docs/scaling.md): the authentication reads the
# key and its tenant (reference tables), then the tenant's state by its id (one node), instead of one
# join that names the tenant only through the join (which Citus would send to every node).
AGENT_MEM_DISTRIBUTED = env_bool("AGENT_MEM_DISTRIBUTED", False)
# Set by gunicorn.conf.py: prometheus_client's multiprocess mode, summed by the /metrics view.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    # Management commands (migrate in a fresh container, a Helm hook Job) record metrics too, and
    # prometheus_client writes into this folder from the first metric on: make sure it exists.
    with contextlib.suppress(OSError):
        os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)

# Django's own body guard matches ours, so a chunked body without Content-Length is cut too.
DATA_UPLOAD_MAX_MEMORY_SIZE = AGENT_MEM_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["core.json.ORJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.json.ORJSONParser"],
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Memcloud API",
    "DESCRIPTION": "Hosted multi-tenant episodic memory for AI agents.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "memcloud.schema.add_errors_and_headers"],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
