"""The training commands' vocabulary: precision spelt as everywhere else (f32), fp32 still taken with a note."""

import pytest
import typer
from typer.testing import CliRunner

from appliance.cli import app
from training.cli import train_precision


def test_train_precision_speaks_f32_and_takes_the_old_fp32_with_a_note(capsys):
    assert [train_precision(word) for word in ("auto", "bf16", "f32")] == ["auto", "bf16", "fp32"]  # step.py's words
    assert train_precision("fp32") == "fp32"
    assert "fp32 is now spelt f32" in " ".join(capsys.readouterr().err.split())
    with pytest.raises(typer.BadParameter, match="'fp16': choose one of auto, bf16, f32"):
        train_precision("fp16")


def test_train_help_shows_the_precisions_and_sizes_as_hxw():
    result = CliRunner().invoke(app, ["train", "-h"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "--precision [auto|f32|bf16]" in text and "--size HxW" in text and "fp32" not in text
