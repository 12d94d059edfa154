"""The CLI as a user runs it: help, version, exit codes, messages at any width, and, in the
runtime-only virtualenv, no torch (the torch-side path: tests/export/test_end_to_end.py)."""

import csv
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import tifffile
import typer
from typer.testing import CliRunner

import appliance
from appliance.cli import app
from appliance.console import EXTRAS
from tests.appliance.conftest import RUNTIME_ONLY, console_script
from tests.conftest import command_line

runner = CliRunner()


def invoke(*args, **options):
    """The command line of args, then options as --name value (tests/conftest.py's command_line)."""
    return runner.invoke(app, command_line(*args, **options))


def test_version_and_help_of_every_command():
    assert invoke("--version").stdout.strip() == f"mcnn-appliance {appliance.__version__}"
    for command in ("synth", "train", "export", "classify", "merge", "benchmark", "demo"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, command


COMMANDS = ("synth", "train", "evaluate", "export", "classify", "merge", "watch", "benchmark", "demo")


def check_help(text: str, command: str | None) -> None:
    """Help as a user reads it: every option named in full, values by metavar or choices (not Typer's
    <str>, <list[Path]>, {out}), an example, and nothing cut short."""
    group = typer.main.get_command(app)
    words = set(text.split())
    assert not re.search(r"<(str|int|float|bool|path|list)|\{\w+\}|…", text), text
    assert "Example:" in text and "-h, --help" in text
    if command is None:
        assert set(COMMANDS) <= words and {"--install-completion", "--show-completion", "--version"} <= words
        return
    for param in group.commands[command].params:
        names = param.opts if param.param_type_name == "option" else [param.metavar or param.name.upper()]
        assert all(name in words for name in names), (command, names)
    assert f"mcnn-appliance {command} " in text  # the example is whole, on one line


@pytest.mark.parametrize("columns", [40, 80])
def test_help_of_every_command_at_any_width(columns):
    for command in (None, *COMMANDS):
        args = ("-h",) if command is None else (command, "-h")
        result = runner.invoke(app, args, env={"COLUMNS": str(columns)})
        assert result.exit_code == 0, result.output
        check_help(result.stdout, command)


@pytest.mark.parametrize("columns", [40, 80])
def test_help_through_the_console_script_without_a_terminal(tmp_path, columns):
    for args, command in ((("--help",), None), (("classify", "-h"), "classify")):
        result = run_console_script(*args, cwd=tmp_path, columns=columns)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        check_help(result.stdout, command)
        assert "\x1b[" not in result.stdout  # no colour codes in a log


def test_shell_completion_is_offered():
    """As a user asks for it from bash: Typer finds the shell from the parent process, which under
    `make test` (CI) is sh, a shell it has no completion for, so the script runs as a child of bash here
    (not exec'd by it: `; exit $?`)."""
    from tests.appliance.conftest import console_script

    done = subprocess.run(
        ["bash", "-c", '"$0" --show-completion; exit $?', str(console_script())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "_MCNN_APPLIANCE_COMPLETE" in done.stdout, done.stderr


def test_classify_and_watch_take_the_shared_options_and_classify_plate_every_one_it_passes_on():
    from appliance.classify import classify_plate
    from appliance.cli import classify, watch
    from appliance.plate_options import SHARED_OPTIONS
    from appliance.watch import PLATE_OPTIONS

    function = inspect.signature(classify_plate).parameters
    assert set(SHARED_OPTIONS) == {"precision", *PLATE_OPTIONS}  # the config file knows every one
    for command in (classify, watch):
        options = inspect.signature(command).parameters
        assert all(name in options for name in SHARED_OPTIONS) and "shared" not in options
    for name in (*PLATE_OPTIONS, "force", "chunk_fields"):
        assert function[name].kind == inspect.Parameter.KEYWORD_ONLY, name
    help_text = " ".join(invoke("watch", "--help").output.split())
    assert "--project" in help_text and "--timepoint" in help_text and "--embeddings" in help_text


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
    assert failure["File"] == path.name and "64x128" in failure["Reason"]


def test_classify_defaults_json_quiet_and_exit_codes(tmp_path, tiny_model, monkeypatch):
    from tests.conftest import write_plate

    plate, work = tmp_path / "imager" / "Week1_22123", tmp_path / "work"
    write_plate(plate, wells=("B02", "C03"), sites=(1, 2))
    work.mkdir()
    monkeypatch.chdir(work)
    result = invoke("classify", plate, "--model", tiny_model, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout holds the JSON alone
    results = work / "results" / "Week1_22123"  # never beside the plate, in the imager's tree
    assert summary["out"] == str(results) and summary["counts"]["classified"] == 4
    assert (results / "fields.parquet").is_file() and os.listdir(plate.parent) == ["Week1_22123"]
    assert "fields classified" not in result.output  # --quiet

    result = invoke("classify", plate, "--model", tiny_model)  # rerun: everything already done
    assert (
        result.exit_code == 0
        and f"nothing to do, its 4 fields were classified on {summary['finished']}" in " ".join(result.output.split())
    )
    for args, says in (
        (["--shard", "2/2"], "I from 0 to N-1"),
        (["--out", plate / "res"], "inside the plate"),
        (["--layout", "nonsense"], "nonsense"),
        (["--precision", "fp8"], "precision"),
    ):
        result = invoke("classify", plate, "--model", tiny_model, *args)
        assert result.exit_code == 2 and says in result.output, (args, result.output)
    result = invoke("classify", plate, "--model", tiny_model, "--embeddings")  # not what the folder holds
    assert result.exit_code == 2 and "--force" in result.output
    result = invoke("classify", plate, "--model", tiny_model, "--embeddings", "--force", "--quiet")
    assert result.exit_code == 0 and (results / "embeddings.parquet").is_file()


def test_a_glob_over_plates_and_their_results_skips_the_results_with_a_note(tmp_path, tiny_model, monkeypatch):
    """data/Week*/* matches the plates, the results folders earlier versions wrote beside them (<plate>-results),
    and any results folder of ours (summary.json): those are skipped, the plates classified."""
    from tests.conftest import write_plate

    data = tmp_path / "data"
    for name in ("Week1/Week1_22123", "Week2/Week2_24121"):
        write_plate(data / name, wells=("B02",), sites=(1,))
    (data / "Week1" / "Week1_22123-results").mkdir()  # the old default, even without its files
    (data / "Week2" / "copied").mkdir()
    (data / "Week2" / "copied" / "summary.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    result = invoke("classify", *sorted(data.glob("Week*/*")), "--model", tiny_model, "--json")
    assert result.exit_code == 0, result.output
    assert [s["plate"] for s in json.loads(result.stdout)] == ["Week1_22123", "Week2_24121"]
    assert (tmp_path / "results" / "Week2_24121" / "summary.json").is_file()
    notes = " ".join(result.output.split())
    assert f"{data / 'Week1' / 'Week1_22123-results'}: skipped, a results folder" in notes
    assert f"{data / 'Week2' / 'copied'}: skipped, a results folder" in notes
    again = invoke("classify", *sorted(tmp_path.glob("*/*")), "--model", tiny_model)  # data/Week1, results/P...
    assert again.exit_code == 0, again.output
    result = invoke("classify", data / "Week1" / "Week1_22123-results", "--model", tiny_model)
    assert result.exit_code == 2 and "no plate to classify" in result.output


def test_synth_refuses_a_folder_that_is_not_empty_unless_overwrite(tmp_path):
    """Old plates would otherwise stay beside a CSV that lists only the new ones."""
    out = tmp_path / "data"
    args = ("synth", out, "--plates", "1", "--fields-per-class", "1", "--size", "64x80")
    assert invoke(*args, "--seed", "1").exit_code == 0
    old = sorted(p.name for p in out.rglob("*.tif"))
    (out / "notes.txt").write_text("mine")
    result = invoke(*args, "--seed", "2")
    assert (
        result.exit_code == 2
        and f"{out}: not empty" in " ".join(result.output.split())
        and "--overwrite" in result.output
    )
    assert sorted(p.name for p in out.rglob("*.tif")) == old
    assert invoke(*args, "--seed", "2", "--overwrite").exit_code == 0
    new = sorted(p.name for p in out.rglob("*.tif"))
    listed = (out / "BBBC021_v1_image.csv").read_text()
    assert not set(new) & set(old) and all(name in listed for name in new)
    assert (out / "notes.txt").read_text() == "mine"  # what synth did not write stays


def test_classify_without_a_model_exits_2(tmp_path):
    result = invoke("classify", tmp_path, "--model", tmp_path / "nothing", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "error" in result.output


def test_runtime_never_imports_torch_and_names_the_missing_extra(tmp_path):
    """With torch unavailable (the runtime image), classify imports; train says which extra."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # import torch now raises, as without the extra
        import appliance.cli, appliance.classify, appliance.inference, appliance.synth
        from typer.testing import CliRunner
        result = CliRunner().invoke(appliance.cli.app, ["train", r"{tmp_path}", "--out", r"{tmp_path / "r"}"])
        print(result.exit_code, result.output)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("2 ") and "pip install 'mcnn-appliance[train]'" in out


def test_classify_a_folder_of_plates_in_other_layouts(tmp_path, tiny_model):
    """A manifest plate and an OME-TIFF plate side by side; --fit pad, --platemap, --channels reach them."""
    import json

    import numpy as np

    from tests.conftest import random_channel

    rng = np.random.default_rng(5)
    manifest_plate, ome_plate = tmp_path / "plates" / "P1", tmp_path / "plates" / "P2"
    (manifest_plate / "img").mkdir(parents=True)
    ome_plate.mkdir()
    for i, name in enumerate(("nuclei", "tubulin", "actin")):
        tifffile.imwrite(manifest_plate / "img" / f"{name}.tif", random_channel(rng, i))
    (manifest_plate / "manifest.csv").write_text(
        "well,site,nuclei,tubulin,actin\nB02,1,img/nuclei.tif,img/tubulin.tif,img/actin.tif\n"
    )
    planes = np.stack([random_channel(rng, i, (96, 128)) for i in (1, 0, 2)])
    tifffile.imwrite(
        ome_plate / "P2_C03_s2.ome.tif",
        planes,
        metadata={"axes": "CYX", "Channel": {"Name": ["Tubulin", "Hoechst 33342", "Phalloidin"]}},
    )
    platemap = tmp_path / "map.csv"
    platemap.write_text("well,compound,concentration\nC03,taxol,0.3\n")

    options = {"model": tiny_model, "out": tmp_path / "out", "fit": "pad", "platemap": platemap, "json": True}
    result = invoke("classify", tmp_path / "plates", channels="DAPI=nuclei", layout="manifest", **options)
    assert result.exit_code == 1, result.output  # P2 has no manifest: --layout applies to every plate
    assert "P2/manifest.csv:cannotread" in "".join(result.output.split())  # rich wraps long paths
    result = invoke("classify", manifest_plate, ome_plate, **options)
    assert result.exit_code == 1, result.output  # P1's manifest names its DAPI column "nuclei": a PlateError
    assert "no path column for DAPI" in " ".join(result.output.split())
    manifest = manifest_plate / "manifest.csv"
    manifest.write_text(manifest.read_text().replace("nuclei,", "DAPI,", 1))
    # P1 was classified by the first command with another --channels: a rerun must not mix them.
    result = invoke("classify", tmp_path / "plates", **options)
    assert result.exit_code == 1 and "--force" in result.output
    result = invoke("classify", tmp_path / "plates", **options, force=True)
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert [(s["plate"], s["layout"], s["counts"]["classified"], s["counts"]["failed"]) for s in summaries] == [
        ("P1", "manifest", 1, 0),
        ("P2", "ome-tiff", 1, 0),
    ]
    with open(tmp_path / "out" / "P2" / "fields.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    assert row["Metadata_Fit"] == "pad 96x128 -> 128x128"
    assert (row["Metadata_Compound"], float(row["Metadata_Concentration"])) == ("taxol", 0.3)


def test_classify_rejects_bad_layout_fit_and_plate_paths(tmp_path, tiny_model):
    for option, value in (("--layout", "phenix"), ("--fit", "crop")):
        result = invoke("classify", tmp_path, "--model", tiny_model, "--out", tmp_path / "o", option, value)
        assert result.exit_code == 2 and repr(value) in result.output
    result = invoke("classify", tmp_path, "--model", tiny_model, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "neither a plate folder" in " ".join(result.output.split())


def run_console_script(*args, cwd, columns: int = 40) -> subprocess.CompletedProcess:
    """The installed `mcnn-appliance` as a script or a log collector runs it: no terminal on any
    stream, COLUMNS narrower than any message, no colour forced."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE", "LINES")
    }
    return subprocess.run(
        [str(console_script()), *map(str, args)],
        cwd=cwd,
        env={**env, "COLUMNS": str(columns)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", ["classify", "watch"])
def test_an_error_naming_a_long_path_is_one_line_at_any_width(tmp_path, tiny_model, command):
    """COLUMNS=40 and no tty: the whole message, path and all, on one line of stderr; stdout empty."""
    deep = tmp_path.joinpath(*[f"a-folder-with-a-rather-long-name-{i}" for i in range(4)])
    if command == "classify":  # an existing folder without plates: refused before the model loads
        deep.mkdir(parents=True)
        args = ("classify", deep, "--model", tiny_model)
        message = f"error: {deep}: neither a plate folder nor a folder of plate folders; looked for "
    else:  # a file where the inbox should be: refused after the model loaded
        deep.parent.mkdir(parents=True)
        deep.write_text("not a folder")
        args = ("watch", deep, "--model", tiny_model, "--out", tmp_path / "results")
        message = f"error: {deep}: the inbox is not a folder"
    assert len(message) > 4 * 40
    result = run_console_script(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert [line for line in result.stderr.splitlines() if line.startswith(message)], result.stderr


@pytest.mark.skipif(not RUNTIME_ONLY, reason="the runtime-only virtualenv of `make test` (MCNN_RUNTIME_ONLY=1)")
def test_the_runtime_install_has_no_torch_side_package():
    """`pip install mcnn-appliance` without extras: none of the packages the extras bring."""
    present = [name for name in EXTRAS if importlib.util.find_spec(name) is not None]
    assert importlib.util.find_spec("torch") is None
    assert not present, f"installed without extras, yet {', '.join(present)} can be imported"


@pytest.mark.skipif(not RUNTIME_ONLY, reason="the runtime-only virtualenv of `make test` (MCNN_RUNTIME_ONLY=1)")
@pytest.mark.parametrize(
    "args, package, extra",
    [
        (("train", "data", "--out", "run"), "torch", "train"),
        (("export", "run"), "onnx", "export"),
        (("benchmark", "run/export"), "onnxruntime", "export"),
    ],
)
def test_the_runtime_install_names_the_extra_a_command_needs(tmp_path, args, package, extra):
    """A torch-side command, run from the installed script, exits 2 naming the install that brings it."""
    result = run_console_script(*args, cwd=tmp_path, columns=80)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert (
        f"error: `mcnn-appliance {args[0]}` needs {package}: pip install 'mcnn-appliance[{extra}]'"
        in result.stderr.splitlines()
    ), result.stderr


def test_classify_reads_a_z_stack_by_plane_or_projection_and_refuses_to_guess(tmp_path, tiny_model):
    from tests.appliance.layouts import write_harmony
    from tests.appliance.layouts.same_fields import random_images

    plate = write_harmony.write_plate(tmp_path / "P1", random_images(wells=("B02",), sites=(1,), shape=(3, 128, 128)))
    dyes = "DAPI=HOECHST 33342,Tubulin=Alexa 488,Actin=Alexa 568"
    refused = invoke("classify", plate, model=tiny_model, out=tmp_path / "none", channels=dyes)
    assert refused.exit_code == 2
    assert "3 planes (1, 2, 3); choose one with --plane N, or project them with --project max" in refused.output
    for options, source in (({"plane": 2}, "plane 2"), ({"project": "max"}, "max projection of 3 planes")):
        out = tmp_path / source.replace(" ", "-")
        result = invoke("classify", plate, model=tiny_model, out=out, channels=dyes, quiet=True, **options)
        assert result.exit_code == 0, result.output
        with open(out / "fields.csv", newline="") as f:
            (row,) = csv.DictReader(f)
        assert (row["Metadata_Layout"], row["Metadata_Source"]) == ("harmony", source)


def test_a_table_is_printed_whole_in_a_narrow_terminal(capsys, monkeypatch):
    """benchmark's and evaluate's tables: at COLUMNS=40 no cell is cut short with an ellipsis."""
    from rich.table import Table

    from appliance.console import print_table

    monkeypatch.setenv("COLUMNS", "40")
    table = Table("backend", "fields/s", "of benchmark_app", title="M-CNN inference")
    table.add_row("openvino bf16 (AVX-512, 2 threads)", "7.26", "98 %")
    print_table(table)
    printed = capsys.readouterr().out
    assert "openvino bf16 (AVX-512, 2 threads)" in printed and "of benchmark_app" in printed and "…" not in printed
