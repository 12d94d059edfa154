import pytest

from training.tables import append_row, read_csv, write_csv, write_dicts


def test_a_table_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.csv"
    write_dicts(path, ("epoch", "loss"), [{"epoch": 1, "loss": 0.5, "ignored": "x"}])
    assert read_csv(path) == [{"epoch": "1", "loss": "0.5"}]

    def rows():
        yield [2, 0.4]
        raise RuntimeError("the writer died half-way")

    with pytest.raises(RuntimeError):
        write_csv(path, ("epoch", "loss"), rows())
    assert read_csv(path) == [{"epoch": "1", "loss": "0.5"}]  # the old table, whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left
    append_row(path, [2, 0.25])
    assert read_csv(path)[-1] == {"epoch": "2", "loss": "0.25"}
    assert read_csv(tmp_path / "missing.csv") == []
