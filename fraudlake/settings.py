"""Every environment variable the project reads, read here and nowhere else.

``Settings`` (the services: Kafka, MongoDB, the lake, retry budgets, S3), ``DashboardSettings``
(the Streamlit page and its flag cache), ``DevServices`` (the local Kafka/FerretDB/PostgreSQL of
``fraudlake.services``) and three process-wide readers that never raise (``debug_from_env``,
``log_level_from_env``, ``services_cache_from_env``). A value that cannot be used is a one-line
``SettingsError`` naming the variable (exit 2 at an entry point).

Secrets (``MONGO_URI`` credentials, ``MONGO_PASSWORD``, TLS key passwords, Kafka SASL/SSL
settings) are held in fields left out of ``repr`` and are never printed; ``redact_uri`` is the
one way to show a MongoDB URI.

MongoDB security from the environment, on top of ``MONGO_URI``: ``MONGO_USERNAME`` /
``MONGO_PASSWORD`` (used when the URI carries no credentials), ``MONGO_AUTH_SOURCE``,
``MONGO_AUTH_MECHANISM``, ``MONGO_TLS`` (true/false), ``MONGO_TLS_CA_FILE``,
``MONGO_TLS_CERT_KEY_FILE``, ``MONGO_TLS_CERT_KEY_PASSWORD``, ``MONGO_TLS_INSECURE`` (dev
only). They are merged into ``Settings.mongo_uri`` as the equivalent pymongo URI options
(``tlsCAFile=…`` etc., percent-encoded), so every component that opens a ``MongoClient`` from
the settings' URI gets them without extra arguments. Kafka: every ``KAFKA_SASL_*``,
``KAFKA_SSL_*`` and ``KAFKA_SECURITY_*`` variable becomes the librdkafka key of the same name
(``KAFKA_SASL_PASSWORD`` → ``sasl.password``) in ``Settings.kafka_extra``, which every producer,
consumer and admin client receives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

from fraudlake.errors import InputError
from lake.layout import HISTORY_NAME, LAKE_NAME, transactions_dir

#: environment variable → pymongo URI option
MONGO_OPTION_ENV: dict[str, str] = {
    "MONGO_AUTH_SOURCE": "authSource",
    "MONGO_AUTH_MECHANISM": "authMechanism",
    "MONGO_TLS": "tls",
    "MONGO_TLS_CA_FILE": "tlsCAFile",
    "MONGO_TLS_CERT_KEY_FILE": "tlsCertificateKeyFile",
    "MONGO_TLS_CERT_KEY_PASSWORD": "tlsCertificateKeyFilePassword",
    "MONGO_TLS_INSECURE": "tlsInsecure",
}
_BOOL_OPTIONS = {"tls", "tlsInsecure"}
_TLS_FILES = {"tlsCAFile", "tlsCertificateKeyFile"}
_SECRET_OPTION = re.compile(r"(?i)((?:tlsCertificateKeyFilePassword|password)=)[^&]*")

#: Retry budgets (seconds) for transient server errors; keep them below the consumer's
#: ``max.poll.interval.ms`` (300 s).
MONGO_RETRY_ENV = "MONGO_RETRY_SECONDS"
KAFKA_RETRY_ENV = "KAFKA_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 120.0
#: The rule control topic when ``KAFKA_RULES_TOPIC`` is unset (streaming.rules, replay, dashboard).
DEFAULT_RULES_TOPIC = "rules.control"
S3_URI_ENV = "FRAUDLAKE_S3_URI"
S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL"
SYNC_CACHE_ENV = "FRAUDLAKE_SYNC_CACHE"
NOTEBOOK_DATA_ENV = "FRAUDLAKE_NOTEBOOK_DATA"
DEBUG_ENV = "FRAUDLAKE_DEBUG"
LOG_LEVEL_ENV = "FRAUDLAKE_LOG_LEVEL"


class SettingsError(InputError):
    """An environment variable holds a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment. Secrets are never printed."""

    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "transactions"
    kafka_dlq_topic: str = "transactions.dlq"
    kafka_group_id: str = "fraudlake-consumer"
    kafka_rules_topic: str | None = None  # the rule control topic; unset: consume keeps --rules
    #                                      fixed, the rules CLI and replay use rules.control
    kafka_group_instance_id: str | None = None  # static group membership (one per process)
    kafka_extra: Mapping[str, str] = field(default_factory=dict, repr=False)  # SASL/TLS passthrough
    mongo_uri: str | None = field(default=None, repr=False)
    mongo_db: str = "fraud"
    mongo_collection: str = "flags"
    lake_dir: Path = Path("storage") / LAKE_NAME
    history_dir: Path = Path("storage") / HISTORY_NAME
    local_flags_path: Path = Path("storage/flags/flags.sqlite")
    consumer_metrics_path: Path = Path("storage/metrics/consumer.json")
    mongo_retry_seconds: float = DEFAULT_RETRY_SECONDS
    kafka_retry_seconds: float = DEFAULT_RETRY_SECONDS
    s3_uri: str | None = None  # where lake.sync / lake.athena put the lake (s3://BUCKET/PREFIX)
    s3_endpoint_url: str | None = None  # an S3-compatible endpoint (moto, MinIO) instead of AWS
    sync_hash_cache: Path | None = None  # lake.sync's MD5 cache (None: under the user's cache)
    history_cache_dir: Path = Path("storage/cache/dashboard")  # dashboard.baseline's cache
    notebook_data: Path | None = None  # the storage root the notebooks read (None: a sample)

    @property
    def embedded(self) -> bool:
        """No Kafka and no MongoDB configured: run in-process with local sinks."""
        return not self.kafka_bootstrap_servers and not self.mongo_uri

    @property
    def rules_topic(self) -> str:
        """The control topic to publish to and read from: ``KAFKA_RULES_TOPIC`` or the default
        (the consumer follows it only when the variable is set)."""
        return self.kafka_rules_topic or DEFAULT_RULES_TOPIC

    @property
    def lake_transactions_dir(self) -> Path:
        return transactions_dir(self.lake_dir)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        passthrough = {
            k[len("KAFKA_"):].lower().replace("_", "."): v
            for k, v in e.items()
            if k.startswith(("KAFKA_SASL_", "KAFKA_SSL_", "KAFKA_SECURITY_"))
        }
        return cls(
            kafka_bootstrap_servers=e.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            kafka_topic=e.get("KAFKA_TOPIC", cls.kafka_topic),
            kafka_dlq_topic=e.get("KAFKA_DLQ_TOPIC", cls.kafka_dlq_topic),
            kafka_group_id=e.get("KAFKA_GROUP_ID", cls.kafka_group_id),
            kafka_rules_topic=e.get("KAFKA_RULES_TOPIC") or None,
            kafka_group_instance_id=e.get("KAFKA_GROUP_INSTANCE_ID") or None,
            kafka_extra=passthrough,
            mongo_uri=_merged_or_raw(e.get("MONGO_URI") or None, e),
            mongo_db=e.get("MONGO_DB", cls.mongo_db),
            mongo_collection=e.get("MONGO_COLLECTION", cls.mongo_collection),
            lake_dir=Path(e.get("LAKE_DIR", str(cls.lake_dir))),
            history_dir=Path(e.get("HISTORY_DIR", str(cls.history_dir))),
            local_flags_path=Path(e.get("LOCAL_FLAGS_PATH", str(cls.local_flags_path))),
            consumer_metrics_path=Path(e.get("CONSUMER_METRICS", str(cls.consumer_metrics_path))),
            mongo_retry_seconds=seconds_from_env(MONGO_RETRY_ENV, DEFAULT_RETRY_SECONDS, e),
            kafka_retry_seconds=seconds_from_env(KAFKA_RETRY_ENV, DEFAULT_RETRY_SECONDS, e),
            s3_uri=e.get(S3_URI_ENV) or None,
            s3_endpoint_url=e.get(S3_ENDPOINT_ENV) or None,
            sync_hash_cache=_path_or_none(e.get(SYNC_CACHE_ENV)),
            history_cache_dir=Path(e.get("DASHBOARD_CACHE_DIR") or cls.history_cache_dir),
            notebook_data=_path_or_none(e.get(NOTEBOOK_DATA_ENV)),
        )


def _path_or_none(text: str | None) -> Path | None:
    return Path(text) if text and text.strip() else None


@dataclass(frozen=True)
class DashboardSettings:
    """The Streamlit page (``dashboard.refresh.DashboardConfig``) and its flag cache
    (``dashboard.flag_cache.CacheConfig``)."""

    report_path: Path = Path("storage/reports/backtest.json")  # BACKTEST_REPORT
    whatif_path: Path = Path("storage/reports/whatif.json")  # WHATIF_REPORT
    users_file: Path = Path("storage/dashboard/users.txt")  # DASHBOARD_USERS_FILE
    refresh_seconds: float = 1.0  # DASHBOARD_REFRESH_SECONDS
    cache_flags: int = 2_000_000  # DASHBOARD_CACHE_FLAGS (0 = no cache)
    sync_overlap_seconds: float = 30.0  # DASHBOARD_SYNC_OVERLAP_S
    sync_seconds: float = 1.0  # DASHBOARD_SYNC_SECONDS
    sync_mode: str = "background"  # DASHBOARD_SYNC: background | inline

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardSettings:
        e = os.environ if env is None else env
        mode = (e.get("DASHBOARD_SYNC") or cls.sync_mode).strip()
        if mode not in ("background", "inline"):
            raise SettingsError(f"DASHBOARD_SYNC must be background or inline, got {mode!r}")
        return cls(
            report_path=Path(e.get("BACKTEST_REPORT") or cls.report_path),
            whatif_path=Path(e.get("WHATIF_REPORT") or cls.whatif_path),
            users_file=Path(e.get("DASHBOARD_USERS_FILE") or cls.users_file),
            refresh_seconds=_number(e, "DASHBOARD_REFRESH_SECONDS", cls.refresh_seconds),
            cache_flags=int(_number(e, "DASHBOARD_CACHE_FLAGS", cls.cache_flags, whole=True,
                                    zero=True)),
            sync_overlap_seconds=_number(e, "DASHBOARD_SYNC_OVERLAP_S",
                                         cls.sync_overlap_seconds, zero=True),
            sync_seconds=_number(e, "DASHBOARD_SYNC_SECONDS", cls.sync_seconds, zero=True),
            sync_mode=mode,
        )


def _number(env: Mapping[str, str], name: str, default: float, *, whole: bool = False,
            zero: bool = False) -> float:
    """A finite number > 0 (``zero``: >= 0; ``whole``: an integer) from ``env[name]``."""
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: not a {'whole ' if whole else ''}number") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise SettingsError(f"{name}={text!r}: must be a finite number "
                            f"{'>= 0' if zero else '> 0'}")
    return value


#: The local servers' ports (``fraudlake.services``; Kafka's controller listens on port + 1).
PORT_ENV: dict[str, int] = {"FRAUDLAKE_KAFKA_PORT": 9092, "FRAUDLAKE_MONGO_PORT": 27017,
                            "FRAUDLAKE_POSTGRES_PORT": 55432, "FRAUDLAKE_TRINO_PORT": 8080}
FERRETDB_BACKENDS: tuple[str, ...] = ("sqlite", "postgresql")


@dataclass(frozen=True)
class DevServices:
    """The local servers of ``python -m fraudlake.services`` (dev, tests, CI): Kafka, FerretDB
    (+ PostgreSQL), Trino; the AWS settings feed Trino's ``s3`` catalog."""

    kafka_port: int = PORT_ENV["FRAUDLAKE_KAFKA_PORT"]
    mongo_port: int = PORT_ENV["FRAUDLAKE_MONGO_PORT"]
    postgres_port: int = PORT_ENV["FRAUDLAKE_POSTGRES_PORT"]
    ferretdb_backend: str = "sqlite"  # FRAUDLAKE_FERRETDB_BACKEND: sqlite | postgresql
    trino_port: int = PORT_ENV["FRAUDLAKE_TRINO_PORT"]
    trino_root: Path | None = None  # FRAUDLAKE_TRINO_ROOT: what local:/// means (storage/)
    trino_s3_endpoint: str | None = None  # FRAUDLAKE_TRINO_S3_ENDPOINT: an `s3` catalog
    aws_region: str = "us-east-1"  # AWS_REGION / AWS_DEFAULT_REGION (the s3 catalog's)
    aws_access_key_id: str = field(default="", repr=False)  # AWS_ACCESS_KEY_ID
    aws_secret_access_key: str = field(default="", repr=False)  # AWS_SECRET_ACCESS_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DevServices:
        e = os.environ if env is None else env
        ports = {name: _port(e, name, default) for name, default in PORT_ENV.items()}
        backend = (e.get("FRAUDLAKE_FERRETDB_BACKEND") or "").strip() or "sqlite"
        if backend not in FERRETDB_BACKENDS:
            raise SettingsError(f"FRAUDLAKE_FERRETDB_BACKEND must be sqlite or postgresql, "
                                f"got {backend!r}")
        return cls(ports["FRAUDLAKE_KAFKA_PORT"], ports["FRAUDLAKE_MONGO_PORT"],
                   ports["FRAUDLAKE_POSTGRES_PORT"], backend,
                   trino_port=ports["FRAUDLAKE_TRINO_PORT"],
                   trino_root=_path_or_none(e.get("FRAUDLAKE_TRINO_ROOT")),
                   trino_s3_endpoint=(e.get("FRAUDLAKE_TRINO_S3_ENDPOINT") or "").strip() or None,
                   aws_region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
                   aws_access_key_id=e.get("AWS_ACCESS_KEY_ID", ""),
                   aws_secret_access_key=e.get("AWS_SECRET_ACCESS_KEY", ""))


TRINO_URI_ENV, TRINO_USER_ENV, TRINO_PASSWORD_ENV = "TRINO_URI", "TRINO_USER", "TRINO_PASSWORD"
TRINO_CATALOG_ENV, TRINO_SCHEMA_ENV = "TRINO_CATALOG", "TRINO_SCHEMA"


@dataclass(frozen=True)
class TrinoSettings:
    """Where ``--backend trino`` runs (``lake.trino``); the password is never printed."""

    uri: str  # TRINO_URI (default: the local server on FRAUDLAKE_TRINO_PORT)
    user: str = "fraudlake"  # TRINO_USER
    password: str | None = field(default=None, repr=False)  # TRINO_PASSWORD
    catalog: str | None = None  # TRINO_CATALOG (None: by the input's kind)
    schema: str | None = None  # TRINO_SCHEMA (None: lake.trino's default)
    s3_endpoint_url: str | None = None  # AWS_ENDPOINT_URL, to list s3:// inputs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrinoSettings:
        e = os.environ if env is None else env
        port = (e.get("FRAUDLAKE_TRINO_PORT") or "").strip() or PORT_ENV["FRAUDLAKE_TRINO_PORT"]
        return cls(uri=e.get(TRINO_URI_ENV) or f"http://127.0.0.1:{port}",
                   user=e.get(TRINO_USER_ENV) or cls.user,
                   password=e.get(TRINO_PASSWORD_ENV) or None,
                   catalog=e.get(TRINO_CATALOG_ENV) or None,
                   schema=e.get(TRINO_SCHEMA_ENV) or None,
                   s3_endpoint_url=e.get(S3_ENDPOINT_ENV) or None)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    if not (text.isdigit() and 0 < int(text) < 65535):
        raise SettingsError(f"{name} must be a port number (1-65534): {text!r}")
    return int(text)


def debug_from_env() -> bool:
    """``FRAUDLAKE_DEBUG`` set to 1/true/yes/on: let tracebacks through (never raises)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def log_level_from_env() -> str:
    """``FRAUDLAKE_LOG_LEVEL`` as given (upper case), ``INFO`` when unset (never raises: the
    caller checks it against ``fraudlake.logs.LEVELS``)."""
    return (os.environ.get(LOG_LEVEL_ENV) or "INFO").strip().upper()


def services_cache_from_env(default: Path) -> Path:
    """``FRAUDLAKE_SERVICES_CACHE``: where fetched jars and built binaries are kept."""
    return Path(os.environ.get("FRAUDLAKE_SERVICES_CACHE") or default)


def trino_cache_from_env() -> Path:
    """``FRAUDLAKE_TRINO_CACHE``: where the Trino tarball is unpacked (outside the clone)."""
    return Path(os.environ.get("FRAUDLAKE_TRINO_CACHE")
                or Path.home() / ".cache" / "fraudlake" / "trino")


def trino_java_home_from_env() -> Path:
    """``FRAUDLAKE_TRINO_JAVA_HOME``: a JDK >= 24 for Trino's process only."""
    return Path(os.environ.get("FRAUDLAKE_TRINO_JAVA_HOME") or "/usr/lib/jvm/temurin-25-jdk-amd64")


def m2_repository_from_env() -> Path:
    """``FRAUDLAKE_M2_REPO``: the local Maven repository holding the Trino tarball."""
    return Path(os.environ.get("FRAUDLAKE_M2_REPO") or Path.home() / ".m2" / "repository")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser())


def seconds_from_env(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """A duration in seconds from env ``name`` (unset/blank = ``default``); anything but a
    finite number > 0 is a one-line ``SettingsError`` naming the variable."""
    text = (os.environ if env is None else env).get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r}: not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name}={text!r}: must be a finite number of seconds > 0")
    return value


def _merged_or_raw(uri: str | None, env: Mapping[str, str]) -> str | None:
    """Never raise while reading settings (most commands do not use MongoDB); an entry point
    that does calls ``mongo_uri_from_env`` itself to turn a bad setting into a usage error."""
    try:
        return mongo_uri_from_env(uri, env)
    except ValueError:
        return uri


def check_mongo_uri(env: Mapping[str, str] | None = None) -> str | None:
    """``MONGO_URI`` merged with the MONGO_* settings; ValueError (never quoting the URI) when
    they cannot be used. For entry points that turn that into a usage error."""
    e = os.environ if env is None else env
    return mongo_uri_from_env(e.get("MONGO_URI") or None, e)


def mongo_uri_from_env(uri: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """``uri`` with the MONGO_USERNAME/PASSWORD, MONGO_AUTH_* and MONGO_TLS_* settings of
    ``env`` merged in as URI options (options already in the URI win). None stays None.

    Raises ValueError (never quoting the URI) when it is not a ``mongodb://`` or
    ``mongodb+srv://`` URI or a boolean setting is not true/false.
    """
    if not uri:
        return None
    e = os.environ if env is None else env
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme not in ("mongodb", "mongodb+srv"):
        raise ValueError("MONGO_URI must start with mongodb:// or mongodb+srv://")
    hosts, _slash, tail = rest.partition("/")
    _check_ports(hosts)
    path, _q, query = tail.partition("?")
    if "?" in hosts:  # "mongodb://h?x=1" is not a valid URI; leave it to pymongo to refuse
        return uri
    user, password = e.get("MONGO_USERNAME"), e.get("MONGO_PASSWORD")
    if user and "@" not in hosts:
        creds = quote_plus(user) + (f":{quote_plus(password)}" if password else "")
        hosts = f"{creds}@{hosts}"
    given = {part.split("=", 1)[0].lower() for part in query.split("&") if part}
    extra = []
    for var, option in MONGO_OPTION_ENV.items():
        value = (e.get(var) or "").strip()
        if not value or option.lower() in given:
            continue
        if option in _BOOL_OPTIONS:
            value = _bool_text(var, value)
        extra.append(f"{option}={quote_plus(value)}")
    if any(o.startswith(tuple(_TLS_FILES)) for o in extra) and "tls" not in given and not (
            e.get("MONGO_TLS") or "").strip():
        extra.append("tls=true")  # a CA or client certificate means TLS
    query = "&".join(p for p in (query, *extra) if p)
    return f"{scheme}://{hosts}/{path}" + (f"?{query}" if query else "")


def _check_ports(hosts: str) -> None:
    """ValueError (naming the port, never the URI) for a host port outside 1..65535."""
    for host in hosts.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2].rpartition(":")[2] if ":" in host else ""
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"MONGO_URI port {port[:20]!r} must be a number within 1..65535")


def _bool_text(var: str, value: str) -> str:
    low = value.lower()
    if low in ("1", "true", "yes", "on"):
        return "true"
    if low in ("0", "false", "no", "off"):
        return "false"
    raise ValueError(f"{var} must be true or false, got {value!r}")


def redact_uri(uri: str | None) -> str:
    """A MongoDB URI safe to print: the password and secret options replaced by ``***``."""
    if not uri:
        return "(none)"
    scheme, sep, rest = uri.partition("://")
    hosts, slash, tail = rest.partition("/")
    if "@" in hosts:
        creds, _at, where = hosts.rpartition("@")
        user = creds.split(":", 1)[0]
        hosts = f"{user}:***@{where}" if ":" in creds else f"{user}@{where}"
    return _SECRET_OPTION.sub(r"\1***", f"{scheme}{sep}{hosts}{slash}{tail}")
