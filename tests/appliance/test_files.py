"""The one atomic writer: the old file stays whole on failure, no temporary is left, the new one lands whole."""

import pytest

from appliance.files import WriteError, write_atomically, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = write_text(tmp_path / "wells.csv", "a\n1\n")
    monkeypatch.setattr("appliance.files.os.replace", lambda *a: (_ for _ in ()).throw(OSError(28, "No space")))
    with pytest.raises(WriteError, match="wells.csv: cannot write \\(No space\\); the file there before is unchanged"):
        write_text(path, "a\n2\n")
    assert path.read_text() == "a\n1\n" and sorted(p.name for p in tmp_path.iterdir()) == ["wells.csv"]


def test_an_exception_in_the_writer_leaves_no_temporary(tmp_path):
    def breaks(tmp):
        tmp.write_text("half")
        raise KeyError("writer bug")

    with pytest.raises(KeyError):
        write_atomically(tmp_path / "x.json", breaks)
    assert list(tmp_path.iterdir()) == []


def test_the_file_and_its_folder_are_synced(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("appliance.files.os.fsync", lambda fd: synced.append(fd))
    write_json(tmp_path / "summary.json", {"a": 1})
    assert len(synced) == 2 and (tmp_path / "summary.json").read_text() == '{\n  "a": 1\n}'
