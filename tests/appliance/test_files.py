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


def test_files_get_the_users_umask_even_from_a_writer_that_makes_them_private(tmp_path):
    """safetensors writes its files 0600; a result or a model others in the lab read must follow the umask."""
    import os

    from appliance.files import FILE_MODE, umask

    def private(tmp):
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)

    path = write_atomically(tmp_path / "weights.safetensors", private)
    assert FILE_MODE == 0o666 & ~umask() and (path.stat().st_mode & 0o777) == FILE_MODE
    assert (write_text(tmp_path / "a.csv", "a\n").stat().st_mode & 0o777) == FILE_MODE
