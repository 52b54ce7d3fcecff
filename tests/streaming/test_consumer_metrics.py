import json
from datetime import UTC, datetime

from dashboard.data import read_lag
from streaming.consume_loop import ConsumeStats, write_metrics


def test_metrics_file_is_written_atomically_and_read_by_the_dashboard(tmp_path):
    path = tmp_path / "metrics" / "consumer.json"
    write_metrics(path, ConsumeStats(events=10, flags=2, dead_letters=1, lag=42))
    doc = json.loads(path.read_text())
    assert doc["lag"] == 42 and doc["events"] == 10 and doc["dead_letters"] == 1
    assert datetime.fromisoformat(doc["updated_at"]).tzinfo is not None
    assert [p.name for p in path.parent.iterdir()] == ["consumer.json"]
    assert read_lag(path, datetime.now(UTC)) == 42
