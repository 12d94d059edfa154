"""The CLI as a user runs it: the whole path at a small size, help, version, exit codes."""

import csv
import json
import subprocess
import sys
import textwrap

import pytest
import tifffile
from typer.testing import CliRunner

import appliance
from appliance.cli import app

runner = CliRunner()
SMALL = "128x256"


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_version_and_help_of_every_command():
    assert invoke("--version").stdout.strip() == f"mcnn-appliance {appliance.__version__}"
    for command in ("synth", "train", "export", "classify", "merge", "benchmark", "demo"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, command


def test_synth_train_export_classify_end_to_end(tmp_path):
    data, heldout, run, results = tmp_path / "data", tmp_path / "heldout", tmp_path / "run", tmp_path / "results"
    assert invoke("synth", data, "--plates", 1, "--fields-per-class", 2, "--size", SMALL).exit_code == 0
    assert invoke("synth", heldout, "--plates", 1, "--fields-per-class", 1, "--size", SMALL,
                  "--seed", 7).exit_code == 0
    result = invoke("train", data, "--out", run, "--epochs", 1, "--batch-size", 4, "--size", SMALL,
                    "--workers", 0)
    assert result.exit_code == 0, result.output
    result = invoke("export", run)
    assert result.exit_code == 0, result.output
    assert (run / "export" / "model.xml").is_file() and (run / "export" / "model.onnx").is_file()

    plate = next(heldout.glob("Week*/Week*_*"))
    broken = sorted(plate.glob("*_w2*.tif"))[0]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated copy from the imager
    result = invoke("classify", plate, "--model", run / "export", "--out", results)
    assert result.exit_code == 1, result.output  # some fields failed
    rows = list(csv.DictReader(open(results / "fields.csv")))
    failures = list(csv.DictReader(open(results / "failures.csv")))
    assert len(rows) == 12 and len(failures) == 1 and failures[0]["File"] == broken.name
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Classify_Class"} <= set(rows[0])
    assert sum(float(v) for k, v in rows[0].items() if k.startswith("Probability_")) == pytest.approx(1, abs=1e-4)
    wells = list(csv.DictReader(open(results / "wells.csv")))
    assert sum(int(w["Count_Fields"]) for w in wells) == 12


def test_classify_refuses_a_field_of_another_size(tmp_path, tiny_model):
    """Never crop or resize: a field whose size is not the model's is a failure naming the file."""
    plate = tmp_path / "Week1_22123"
    from tests.conftest import write_plate

    write_plate(plate, wells=("B02",), sites=(1,), seed=3)
    path = sorted(plate.glob("*_w4*.tif"))[0]
    tifffile.imwrite(path, tifffile.imread(path)[:64])
    result = invoke("classify", plate, "--model", tiny_model, "--out", tmp_path / "out")
    assert result.exit_code == 1
    failure = list(csv.DictReader(open(tmp_path / "out" / "failures.csv")))[0]
    assert failure["File"] == path.name and "128x64" in failure["Reason"]


def test_classify_defaults_json_quiet_and_exit_codes(tmp_path, tiny_model):
    from tests.conftest import write_plate

    plate = tmp_path / "Week1_22123"
    write_plate(plate, wells=("B02", "C03"), sites=(1, 2))
    result = invoke("classify", plate, "--model", tiny_model, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    assert summary["out"] == str(tmp_path / "Week1_22123-results") and summary["counts"]["classified"] == 4
    assert (tmp_path / "Week1_22123-results" / "fields.parquet").is_file()
    assert "fields classified" not in result.output  # --quiet

    result = invoke("classify", plate, "--model", tiny_model)  # rerun: everything already done
    assert result.exit_code == 0 and "4 fields classified (4 done earlier)" in result.output
    for args, says in ((["--shard", "2/2"], "I from 0 to N-1"), (["--out", plate / "res"], "inside the plate"),
                       (["--layout", "nonsense"], "layout 'nonsense'"), (["--precision", "fp8"], "precision")):
        result = invoke("classify", plate, "--model", tiny_model, *args)
        assert result.exit_code == 2 and says in result.output, (args, result.output)
    result = invoke("classify", plate, "--model", tiny_model, "--embeddings")  # not what the folder holds
    assert result.exit_code == 2 and "--force" in result.output
    result = invoke("classify", plate, "--model", tiny_model, "--embeddings", "--force", "--quiet")
    assert result.exit_code == 0 and (tmp_path / "Week1_22123-results" / "embeddings.parquet").is_file()


def test_classify_without_a_model_exits_2(tmp_path):
    result = invoke("classify", tmp_path, "--model", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "error" in result.output


def test_runtime_never_imports_torch_and_names_the_missing_extra(tmp_path):
    """With torch unavailable (the runtime image), classify imports; train says which extra."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # import torch now raises, as without the extra
        import appliance.cli, appliance.classify, appliance.inference, appliance.synth, appliance.demo
        from typer.testing import CliRunner
        result = CliRunner().invoke(appliance.cli.app, ["train", r"{tmp_path}", "--out", r"{tmp_path / 'r'}"])
        print(result.exit_code, result.output)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("2 ") and "pip install 'mcnn-appliance[train]'" in out
