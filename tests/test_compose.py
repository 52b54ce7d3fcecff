"""docker-compose.prod.yml, the e2e override, Dockerfiles, .env.example: structure checks.

The stack itself is brought up for real by scripts/compose-e2e.sh (tests/test_compose_e2e.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.prod.yml"
OVERRIDE = ROOT / "docker-compose.e2e.yml"
PUBLIC_BASE = "python:3.11-slim-bookworm"
LONG_RUNNING = ("kafka", "mongo", "producer", "consumer", "dashboard")
SECRET_KEY = re.compile(r"PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|ACCESS_KEY", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_all_services_present(services):
    assert set(LONG_RUNNING) | {"kafka-init"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["mongo"]["image"].startswith("mongo:")
    for name in ("producer", "consumer", "dashboard"):
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    assert services["producer"]["command"][:3] == ["python", "-m", "streaming.produce"]
    assert services["consumer"]["command"] == ["python", "-m", "streaming.consume"]
    assert services["dashboard"]["command"][:3] == ["streamlit", "run", "dashboard/app.py"]


def test_kafka_runs_kraft_combined_mode_and_init_creates_topics(services):
    env = _env(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "CONTROLLER" in env["KAFKA_LISTENERS"] and env["KAFKA_ADVERTISED_LISTENERS"] == \
        "PLAINTEXT://kafka:9092"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "ZOOKEEPER" not in " ".join(env)
    script = services["kafka-init"]["command"][0]
    assert "--topic transactions " in script and "--topic transactions.dlq" in script
    assert "--partitions ${KAFKA_TOPIC_PARTITIONS:-6}" in script
    assert "--if-not-exists" in script  # re-runnable


def test_health_checks_and_dependency_conditions(services):
    for name in ("kafka", "mongo", "dashboard"):
        check = services[name]["healthcheck"]
        assert check["test"] and check["retries"] >= 3, name
    assert "ping" in " ".join(services["mongo"]["healthcheck"]["test"])
    assert "/_stcore/health" in " ".join(services["dashboard"]["healthcheck"]["test"])
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("producer", "consumer"):
        assert services[name]["depends_on"]["kafka-init"]["condition"] == \
            "service_completed_successfully"
    assert services["consumer"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert services["dashboard"]["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_named_volumes_and_restart_policies(compose, services):
    assert {"kafka-data", "mongo-data", "lake"} <= set(compose["volumes"])
    assert "kafka-data:/var/lib/kafka/data" in services["kafka"]["volumes"]
    assert "mongo-data:/data/db" in services["mongo"]["volumes"]
    assert "lake:/app/storage" in services["consumer"]["volumes"]
    assert "lake:/app/storage" in services["dashboard"]["volumes"]
    for name in LONG_RUNNING:
        allowed = ("unless-stopped", "always") + (("on-failure",) if name == "producer" else ())
        assert services[name]["restart"] in allowed, name
        for volume in services[name].get("volumes", []):
            assert not volume.startswith(("/", ".")), f"{name}: bind mount {volume}"
    assert services["kafka-init"]["restart"] == "no"


def test_consumer_is_scalable(services):
    consumer = services["consumer"]
    assert "container_name" not in consumer and "ports" not in consumer
    assert "hostname" not in consumer
    assert services["dashboard"]["ports"] == ["${DASHBOARD_PORT:-8501}:8501"]


def test_no_inline_secrets(services):
    for name, service in services.items():
        for key, value in _env(service).items():
            if SECRET_KEY.search(key):
                assert REFERENCE.fullmatch(value), f"{name}.{key} must be a ${{…}} reference"
            for userinfo in re.findall(r"://([^/@\s]+)@", value):
                user, _, password = userinfo.partition(":")
                assert REFERENCE.fullmatch(password), f"{name}.{key}: inline password in URI"
    mongo = _env(services["mongo"])
    assert mongo["MONGO_INITDB_ROOT_PASSWORD"].startswith("${MONGO_ROOT_PASSWORD:?")
    assert mongo["MONGO_INITDB_ROOT_USERNAME"].startswith("${MONGO_ROOT_USER:?")


def test_env_example_has_placeholders_only():
    example = (ROOT / ".env.example").read_text()
    values = dict(line.split("=", 1) for line in example.splitlines()
                  if line and not line.startswith("#"))
    for key, value in values.items():
        if SECRET_KEY.search(key):
            assert value == "" or "CHANGE_ME" in value, key
    compose_text = "\n".join(ln for ln in COMPOSE.read_text().splitlines()
                             if not ln.lstrip().startswith("#"))
    needed = set(re.findall(r"\$\{([A-Z0-9_]+):\?", compose_text))
    assert needed <= set(values), f"missing from .env.example: {needed - set(values)}"
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def _instructions(path: Path) -> list[str]:
    text = path.read_text()
    return [ln.strip() for ln in text.replace("\\\n", " ").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def test_dockerfile_multistage_slim_non_root():
    lines = _instructions(ROOT / "Dockerfile")
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 2 and all(f.split()[1] == "${BASE_IMAGE}" for f in froms)
    assert f"ARG BASE_IMAGE={PUBLIC_BASE}" in lines  # users get the public slim image
    final = lines[lines.index(froms[-1]):]
    users = [ln.split()[1] for ln in final if ln.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert not any(re.search(r"apt-get|gcc|build-essential|pip install", ln) for ln in final)
    assert any("pyproject.toml" in ln and "dependencies" in ln for ln in lines)
    assert any("-c constraints.txt -r requirements.txt" in ln for ln in lines)
    assert any("python3 -m venv" in ln for ln in lines)  # a Debian base has no `python`


def test_dockerfiles_need_no_registry_frontend():
    for path in (ROOT / "Dockerfile", *ROOT.glob("services/*/image/Dockerfile")):
        first = path.read_text().lstrip().splitlines()[0]
        assert not re.match(r"#\s*syntax\s*=", first), path  # BuildKit would fetch a frontend
        froms = [ln for ln in _instructions(path) if ln.upper().startswith("FROM ")]
        assert froms and froms[0].split()[1] == "${BASE_IMAGE}", path


def test_compose_passes_the_base_image_and_runs_an_init(services):
    for name in ("producer", "consumer", "dashboard", "history", "sync"):
        service = services[name]
        assert service["build"]["args"]["BASE_IMAGE"] == f"${{BASE_IMAGE:-{PUBLIC_BASE}}}"
        assert service["init"] is True, name


def test_test_override_swaps_only_kafka_and_mongo(services):
    override = yaml.safe_load(OVERRIDE.read_text())["services"]
    assert set(override) == {"kafka", "kafka-init", "mongo"}
    allowed = {"image", "command", "healthcheck", "init"}
    for name, service in override.items():
        assert set(service) <= allowed, f"{name}: {set(service) - allowed}"
    # The broker image speaks apache/kafka's settings and tools: kafka's environment, command
    # and health check and kafka-init's command stay the production file's.
    assert set(override["kafka"]) == {"image", "init"}
    assert set(override["kafka-init"]) == {"image"}
    tools = ROOT / "services" / "kafka" / "image" / "bin"
    for script in re.findall(r"/opt/kafka/bin/([\w.-]+\.sh)",
                             services["kafka"]["healthcheck"]["test"][-1]
                             + services["kafka-init"]["command"][0].replace("$$topics=", "")):
        assert (tools / script).exists(), script
    assert "kafka-topics.sh" in services["kafka-init"]["command"][0]
    assert "ping" in " ".join(override["mongo"]["healthcheck"]["test"])


def test_kafka_image_tools_match_the_compose_calls():
    init = yaml.safe_load(COMPOSE.read_text())["services"]["kafka-init"]["command"][0]
    assert "topics=/opt/kafka/bin/kafka-topics.sh" in init
    tools = ROOT / "services" / "kafka" / "image" / "bin"
    for path in tools.glob("kafka-*.sh"):
        assert path.stat().st_mode & 0o111, f"{path.name} is not executable"
    assert "kafka-tools" in (ROOT / "services" / "kafka" / "pom.xml").read_text()


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode \
            == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_validates(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose client (neither `docker compose` nor `docker-compose`)")
    env_file = tmp_path / ".env"
    shutil.copy(ROOT / ".env.example", env_file)
    ok = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "-q"],
                        capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    missing = tmp_path / "empty.env"
    missing.write_text("")
    refused = subprocess.run([*cli, "--env-file", str(missing), "-f", str(COMPOSE), "config", "-q"],
                             capture_output=True, text=True, cwd=tmp_path,
                             env={"PATH": "/usr/bin:/bin:/usr/local/bin"})
    assert refused.returncode != 0 and "MONGO_ROOT" in refused.stderr  # secrets are required
    merged = subprocess.run([*cli, "--env-file", str(env_file), "-f", str(COMPOSE), "-f",
                             str(OVERRIDE), "config"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    stack = yaml.safe_load(merged.stdout)["services"]
    assert stack["consumer"]["command"] == ["python", "-m", "streaming.consume"]
    assert stack["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    published = {name for name, svc in stack.items() if svc.get("ports")}
    assert published == {"dashboard"}


def test_each_service_gets_only_the_settings_it_needs(services):
    producer, consumer, dashboard = (_env(services[n]) for n in ("producer", "consumer",
                                                                  "dashboard"))
    assert producer["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092" and "MONGO_URI" not in producer
    assert {"KAFKA_BOOTSTRAP_SERVERS", "MONGO_URI", "LAKE_DIR"} <= set(consumer)
    assert "@mongo:27017/" in consumer["MONGO_URI"] and "MONGO_URI" in dashboard
    assert consumer["LAKE_DIR"].startswith("/app/storage/")  # on the lake volume


def test_production_kafka_is_the_version_the_e2e_runs(services):
    pom = (ROOT / "services" / "kafka" / "pom.xml").read_text()
    tested = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert services["kafka"]["image"] == f"apache/kafka:${{KAFKA_VERSION:-{tested}}}"
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
