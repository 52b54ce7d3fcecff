"""One settings object, read from the environment at the entry point."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Everything the services read from the environment. Secrets are never printed."""

    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "transactions"
    kafka_dlq_topic: str = "transactions.dlq"
    kafka_group_id: str = "fraudlake-consumer"
    kafka_extra: Mapping[str, str] = field(default_factory=dict, repr=False)  # SASL/TLS passthrough
    mongo_uri: str | None = field(default=None, repr=False)
    mongo_db: str = "fraud"
    mongo_collection: str = "flags"
    lake_dir: Path = Path("storage/lake")
    history_dir: Path = Path("storage/historical")
    local_flags_path: Path = Path("storage/flags/flags.sqlite")

    @property
    def embedded(self) -> bool:
        """No Kafka and no MongoDB configured: run in-process with local sinks."""
        return not self.kafka_bootstrap_servers and not self.mongo_uri

    @property
    def lake_transactions_dir(self) -> Path:
        return self.lake_dir / "transactions"

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
            kafka_extra=passthrough,
            mongo_uri=e.get("MONGO_URI") or None,
            mongo_db=e.get("MONGO_DB", cls.mongo_db),
            mongo_collection=e.get("MONGO_COLLECTION", cls.mongo_collection),
            lake_dir=Path(e.get("LAKE_DIR", str(cls.lake_dir))),
            history_dir=Path(e.get("HISTORY_DIR", str(cls.history_dir))),
            local_flags_path=Path(e.get("LOCAL_FLAGS_PATH", str(cls.local_flags_path))),
        )
