"""One settings object, read from the environment at the entry point.

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


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment. Secrets are never printed."""

    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "transactions"
    kafka_dlq_topic: str = "transactions.dlq"
    kafka_group_id: str = "fraudlake-consumer"
    kafka_rules_topic: str = "rules.control"
    kafka_extra: Mapping[str, str] = field(default_factory=dict, repr=False)  # SASL/TLS passthrough
    mongo_uri: str | None = field(default=None, repr=False)
    mongo_db: str = "fraud"
    mongo_collection: str = "flags"
    lake_dir: Path = Path("storage") / LAKE_NAME
    history_dir: Path = Path("storage") / HISTORY_NAME
    local_flags_path: Path = Path("storage/flags/flags.sqlite")

    @property
    def embedded(self) -> bool:
        """No Kafka and no MongoDB configured: run in-process with local sinks."""
        return not self.kafka_bootstrap_servers and not self.mongo_uri

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
            kafka_rules_topic=e.get("KAFKA_RULES_TOPIC", cls.kafka_rules_topic),
            kafka_extra=passthrough,
            mongo_uri=_merged_or_raw(e.get("MONGO_URI") or None, e),
            mongo_db=e.get("MONGO_DB", cls.mongo_db),
            mongo_collection=e.get("MONGO_COLLECTION", cls.mongo_collection),
            lake_dir=Path(e.get("LAKE_DIR", str(cls.lake_dir))),
            history_dir=Path(e.get("HISTORY_DIR", str(cls.history_dir))),
            local_flags_path=Path(e.get("LOCAL_FLAGS_PATH", str(cls.local_flags_path))),
        )


def _merged_or_raw(uri: str | None, env: Mapping[str, str]) -> str | None:
    """Never raise while reading settings (most commands do not use MongoDB); an entry point
    that does calls ``mongo_uri_from_env`` itself to turn a bad setting into a usage error."""
    try:
        return mongo_uri_from_env(uri, env)
    except ValueError:
        return uri


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
