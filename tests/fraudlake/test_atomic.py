import pytest

from fraudlake.atomic import replacing, write_text


def test_write_text_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_text(path, "old")
    write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def test_failed_write_keeps_old_file_and_removes_temp(tmp_path):
    path = tmp_path / "flags.parquet"
    write_text(path, "complete")
    with pytest.raises(RuntimeError), replacing(path, sync_dir=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["flags.parquet"]
