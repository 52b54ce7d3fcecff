"""The rule control topic on the real broker: publish, list, show, switch records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rules.model import load_rule_set
from streaming import rules_control as rc

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    full = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "streaming.rules", *args], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=120)


def test_fold_keeps_the_latest_pointer_and_every_switch() -> None:
    a = load_rule_set()
    b = a.with_overrides(["high_amount.threshold=2500"])
    records = [rc.set_record(a), rc.pointer_record("active", a.id), rc.set_record(b),
               rc.pointer_record("shadow", b.id),
               rc.switch_record(rc.Switch("t", 0, "active", 0, a.id, "x")),
               rc.switch_record(rc.Switch("t", 0, "active", 120, b.id, "y")),
               (b"junk", b"not json"), (b"x", None)]
    state = rc.fold(records)
    assert state.current("active").id == a.id and state.current("shadow").id == b.id
    assert state.set_at("t", 0, "active", 119) == a.id
    assert state.set_at("t", 0, "active", 120) == b.id
    assert state.set_at("t", 1, "active", 5) is False


def test_publish_list_show_on_the_real_broker(kafka_bootstrap: str, make_topic,
                                              tmp_path: Path) -> None:
    topic = f"rules-{tmp_path.name[-12:]}".replace("_", "-")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_RULES_TOPIC": topic}
    out = _cli("publish", "rules/default.toml", env=env)
    assert out.returncode == 0, out.stderr
    default_id = load_rule_set().id
    assert default_id in out.stdout
    out = _cli("publish", "rules/default.toml", "--shadow", "--set",
               "high_amount.threshold=2500", env=env)
    assert out.returncode == 0, out.stderr
    listed = _cli("list", env=env)
    assert listed.returncode == 0 and default_id in listed.stdout
    shadow_id = load_rule_set(overrides=["high_amount.threshold=2500"]).id
    assert shadow_id in listed.stdout
    shown = json.loads(_cli("show", "shadow", env=env).stdout)
    assert shown["id"] == shadow_id and shown["rules"][0]["threshold"] == "2500"
    state = rc.read_control(kafka_bootstrap, topic)
    assert state.current("active").id == default_id
    assert _cli("unshadow", env=env).returncode == 0
    assert rc.read_control(kafka_bootstrap, topic).current("shadow") is None
    from confluent_kafka.admin import AdminClient, ConfigResource
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([res])[res].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
    admin.delete_topics([topic])


@pytest.mark.parametrize("args, code, fragment", [
    (("publish", "nope.toml"), 2, "no such rule set file"),
    (("publish", "rules/default.toml", "--set", "high_amount.threshold=nan"), 2, "finite"),
    (("show",), 2, "no Kafka"),
])
def test_bad_input_is_one_line(args, code, fragment) -> None:
    out = _cli(*args)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == code and len(lines) == 1 and fragment in lines[0], out.stderr


def test_unreachable_broker_is_one_line_exit_1() -> None:
    out = _cli("--timeout", "3", "list", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and len(lines) == 1 and "cannot use Kafka" in lines[0], out.stderr
