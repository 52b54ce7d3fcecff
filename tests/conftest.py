"""Session fixtures for the real servers: Kafka 4 (KRaft), FerretDB (MongoDB wire protocol)
and Trino 476 (``trino_uri``).

The servers start once per session, only when a test asks for them (``kafka_bootstrap`` /
``mongo_uri``), and stop at session end if this session started them (a server already running
is reused and left running). Each test gets its own topic / database, removed afterwards.
Tests that use these fixtures are marked ``services`` automatically (``-m "not services"`` skips).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from fraudlake import services

SERVICE_FIXTURES = {"kafka_bootstrap", "mongo_uri", "tmp_topic", "make_topic", "mongo_db",
                    "mongo_collection", "trino_uri"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _serve(server: services.Server) -> Iterator[str]:
    try:
        res = services.up(server)
    except services.ServiceError as exc:
        pytest.fail(f"could not start {server.name}: {exc}", pytrace=False)
    try:
        yield server.address
    finally:
        if res.started:
            services.down(server)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a running Kafka 4 broker (started for this session if needed)."""
    yield from _serve(services.kafka_server())


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    """``mongodb://…`` of a running FerretDB (started for this session if needed)."""
    yield from _serve(services.mongo_server())


@pytest.fixture(scope="session")
def trino_uri() -> Iterator[str]:
    """``http://…`` of a running single-node Trino whose ``hive`` catalog serves
    ``services.trino_root()`` (started for this session if needed)."""
    yield from _serve(services.trino_server())


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """Factory: ``make_topic(partitions=4, prefix="t")`` creates a unique topic; all are
    deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(partitions: int = 4, prefix: str = "test") -> str:
        name = unique_name(prefix)
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=1)], operation_timeout=30)
        futures[name].result(timeout=30)
        created.append(name)
        _wait_for_leaders(admin, name, partitions)
        return name

    yield make
    if created:
        for fut in admin.delete_topics(created, operation_timeout=30).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass


def _wait_for_leaders(admin, topic: str, partitions: int, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = admin.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == partitions and all(
            p.leader >= 0 for p in md.partitions.values()
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {topic} has no leaders after {timeout}s")


@pytest.fixture
def tmp_topic(make_topic: Callable[..., str]) -> str:
    """A fresh topic with 4 partitions, deleted after the test."""
    return make_topic(4)


@pytest.fixture
def mongo_db(mongo_uri: str) -> Iterator:
    """A fresh ``pymongo`` Database, dropped after the test."""
    from pymongo import MongoClient

    client = MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000, tz_aware=True)
    name = unique_name("test").replace("-", "_")
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture
def mongo_collection(mongo_db) -> Iterator:
    """A fresh collection in a fresh database (dropped with it)."""
    yield mongo_db["flags"]
