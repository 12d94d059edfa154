"""A run folder is never silently mixed, and the field size comes from (and is checked against) the data."""

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from appliance.cli import app
from appliance.layouts.base import Field
from tests.conftest import command_line
from training.run_folder import FieldSizeError, RunFolderError, check_run_folders, data_field_size, next_free


def a_run(folder, with_export=True):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text("{}")
    if with_export:
        (folder / "export").mkdir()
        (folder / "export" / "model.xml").write_text("<old/>")
        (folder / "evaluation").mkdir()
    return folder


def test_a_folder_holding_a_run_is_refused_naming_the_next_free_folder(tmp_path):
    run = a_run(tmp_path / "first")
    a_run(tmp_path / "first-2")
    with pytest.raises(RunFolderError, match=r"already holds a run; --resume continues it, --overwrite") as caught:
        check_run_folders([run], resume=False, overwrite=False)
    assert str(tmp_path / "first-3") in str(caught.value)
    assert next_free(tmp_path / "new") == tmp_path / "new-2"
    assert check_run_folders([tmp_path / "new"], resume=False, overwrite=False) == []  # a new folder is free
    (tmp_path / "empty").mkdir()
    assert check_run_folders([tmp_path / "empty"], resume=False, overwrite=False) == []
    assert check_run_folders([run], resume=True, overwrite=False) == []  # train checks its checkpoint
    assert check_run_folders([run], resume=False, overwrite=True) == [run]


def test_overwrite_deletes_only_runs_and_never_with_resume(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="already holds files"):
        check_run_folders([other], resume=False, overwrite=False)
    with pytest.raises(RunFolderError, match="not a run folder .* --overwrite deletes only runs"):
        check_run_folders([other], resume=False, overwrite=True)
    with pytest.raises(RunFolderError, match="give one of them"):
        check_run_folders([tmp_path / "x"], resume=True, overwrite=True)


def write_tiff(path, shape):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.zeros(shape, dtype=np.uint16))
    return path


def test_the_field_size_is_read_from_every_fields_headers(tmp_path):
    def channels(site):
        return tuple(write_tiff(tmp_path / f"s{site}_w{c}.tif", (64, 96)) for c in "124")

    fields = [Field(plate="P", well="B02", site=s, paths=channels(s)) for s in (1, 2)]
    assert data_field_size(fields, None, tmp_path) == (64, 96)
    assert data_field_size(fields, (64, 96), tmp_path) == (64, 96)
    with pytest.raises(FieldSizeError, match=r"the fields are 64x96 \(HxW\), --size asks for 128x128"):
        data_field_size(fields, (128, 128), tmp_path)
    odd = write_tiff(tmp_path / "odd.tif", (80, 96))
    mixed = [*fields, Field(plate="P", well="B03", site=1, paths=(odd,))]
    with pytest.raises(FieldSizeError, match=rf"64x96: 6 file\(s\).*80x96: 1 file\(s\), e.g. {odd}"):
        data_field_size(mixed, None, tmp_path)
    with pytest.raises(FieldSizeError, match="file not found"):
        data_field_size([Field(plate="P", well="B02", site=1, paths=(tmp_path / "gone.tif",))], None, tmp_path)


def test_train_takes_the_datas_size_refuses_a_second_run_and_overwrites_on_request(one_per_class, tmp_path):
    run = tmp_path / "runs" / "first"
    line = command_line("train", one_per_class, out=run, epochs=1, batch_size=4, workers=0)  # no --size
    first = CliRunner().invoke(app, line)
    assert first.exit_code == 0, first.output
    info = json.loads((run / "run.json").read_text())
    assert info["train_config"]["size"] == [128, 128]
    assert info["train_config"]["data"] == str(one_per_class.resolve())  # absolute paths
    assert info["train_config"]["out"] == str(run.resolve())
    (run / "export").mkdir()
    (run / "export" / "model.xml").write_text("<stale/>")
    (run / "evaluation").mkdir()

    again = CliRunner().invoke(app, line)
    assert again.exit_code == 2
    assert "already holds a run" in again.output and str(tmp_path / "runs" / "first-2") in again.output
    assert json.loads((run / "run.json").read_text())["run_id"] == info["run_id"]  # untouched

    wrong = CliRunner().invoke(app, command_line("train", one_per_class, out=tmp_path / "new", size="256x256"))
    assert wrong.exit_code == 2 and "the fields are 128x128 (HxW), --size asks for 256x256" in wrong.output
    assert not (tmp_path / "new").exists()  # nothing written

    replaced = CliRunner().invoke(app, [*line, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads((run / "run.json").read_text())["run_id"] != info["run_id"]
    assert not (run / "export").exists() and not (run / "evaluation").exists()
