"""Arrays built from buffers equal ``pa.array``'s, and the generator never imports pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from simulator.arrow import numeric_array, string_array

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("values,type_", [
    (np.arange(-5, 70, dtype=np.int64), None), (np.arange(9, dtype=np.int32), None),
    (np.linspace(-1, 1, 11), None), (np.random.default_rng(1).random(67) < 0.4, None),
    (np.arange(0, 10**12, 10**10, dtype=np.int64), pa.timestamp("us", tz="UTC")),
    (np.zeros(0, dtype=np.int32), None),
])
def test_numeric_arrays_equal_pa_array(values: np.ndarray, type_):
    valid = np.random.default_rng(len(values)).random(len(values)) < 0.7
    assert numeric_array(values, type_).equals(pa.array(values, type=type_))
    masked = numeric_array(values, type_, valid)
    assert masked.equals(pa.array(values, type=type_, mask=~valid))
    assert masked.null_count == (~valid).sum()


def test_string_arrays_equal_pa_array():
    for values in ([], ["a"], ["", "Zürich", "M0000001", "dev-00ab"]):
        assert string_array(values).equals(pa.array(values, type=pa.string()))


def test_generating_history_and_live_events_never_imports_pandas(tmp_path: Path):
    """pandas costs each generator process ~30 MiB and ~0.15 CPU-s (pa.array imports it)."""
    code = f"""
import sys
from datetime import UTC, datetime
from pathlib import Path
import batch.generate_history as gh
from simulator import simulate
from streaming.produce import live_world
gh.generate_history(gh.HistoryConfig(rows=30_000, out=Path({str(tmp_path / 'h')!r}),
                    start_year=2024, workers=1), progress=False)
end = datetime(2026, 11, 30, tzinfo=UTC)
assert sum(f.height for f in simulate(live_world(7, 2_000, end), end, 5_000, 7)) == 5_000
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_device_strings_are_the_formatted_codes():
    """``device_strings`` (digit bytes) equals formatting each code, at the 48-bit edges too
    and past them (the formatted fallback)."""
    from simulator.events import device_strings

    rng = np.random.default_rng(3)
    for code in (np.zeros(0, dtype=np.int64),
                 np.array([0, 1, 15, 16, (1 << 48) - 1], dtype=np.int64),
                 rng.integers(0, 1 << 48, 5_000),
                 np.array([5, 1 << 48, (1 << 60) + 7], dtype=np.int64)):
        got = device_strings(code)
        want = string_array([f"dev-{c:012x}" for c in code.tolist()])
        assert got.equals(want) and got.null_count == 0
