import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from appliance.cli import app
from appliance.layouts.base import Field
from appliance.layouts.bbbc021 import IMAGE_CSV, load_fields
from appliance.synth import write_dataset
from export.exporter import export_run
from tests.conftest import command_line, truncate
from training.evaluate import EvaluationError, Predictions, score, write_evaluation
from training.splits import SplitError, chosen_folds

LABELS = ("Actin disruptors", "Eg5 inhibitors", "DMSO")
SIZE = (128, 128)
ONE_EPOCH = {"epochs": 1, "batch_size": 2, "size": "128x128", "precision": "fp32", "workers": 0}  # train's options


def field(compound: str, concentration: float, moa: str, site: int = 1) -> Field:
    return Field(
        plate="Week1_1",
        well="B02",
        site=site,
        week="Week1",
        compound=compound,
        concentration=concentration,
        moa=moa,
        paths=(),
    )


def hand_made() -> Predictions:
    """Two treatments and a DMSO field; the answers are worked out by hand below."""
    fields = [
        field("cytochalasin B", 1.0, "Actin disruptors", 1),
        field("cytochalasin B", 1.0, "Actin disruptors", 2),
        field("cytochalasin B", 1.000000, "Actin disruptors", 3),
        field("AZ138", 0.3, "Eg5 inhibitors"),
        field("DMSO", 0.0, "DMSO"),
    ]
    probabilities = np.array(
        [
            [0.40, 0.60, 0.0],  # wrong (Eg5)
            [0.90, 0.10, 0.0],  # right
            [0.45, 0.55, 0.0],  # wrong: 2 of 3 fields say Eg5, the mean says Actin
            [0.70, 0.30, 0.0],  # wrong
            [0.00, 0.10, 0.9],
        ]
    )  # right
    return Predictions(LABELS, fields, probabilities)


def test_treatments_are_classified_by_their_mean_probabilities():
    scores = score(hand_made())
    assert scores.field_accuracy == pytest.approx(2 / 5)
    # cytochalasin B: mean (0.583, 0.417) -> Actin (a majority vote of fields would say Eg5); AZ138 -> Actin
    assert [(t["compound"], t["predicted"], t["fields"]) for t in scores.treatments] == [
        ("AZ138", "Actin disruptors", 1),
        ("cytochalasin B", "Actin disruptors", 3),
    ]  # DMSO: no treatment score
    assert scores.treatment_accuracy == pytest.approx(1 / 2)
    assert scores.treatment_confusion.tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert scores.field_confusion.tolist() == [[1, 2, 0], [1, 0, 0], [0, 0, 1]]
    actin, eg5, dmso = scores.per_class()
    assert actin["field_precision"] == pytest.approx(1 / 2) and actin["field_recall"] == pytest.approx(1 / 3)
    assert actin["treatment_accuracy"] == 1.0 and actin["treatment_precision"] == pytest.approx(1 / 2)
    assert eg5["field_precision"] == 0.0 and eg5["treatment_accuracy"] == 0.0
    assert eg5["treatment_precision"] is None  # nothing predicted Eg5 at treatment level: undefined, not 0
    assert dmso["treatments"] == 0 and dmso["treatment_accuracy"] is None and dmso["field_recall"] == 1.0


def test_a_label_the_model_does_not_have_is_an_error():
    predictions = hand_made()
    predictions.fields[0] = field("taxol", 0.3, "Microtubule stabilizers")
    with pytest.raises(EvaluationError, match="Microtubule stabilizers"):
        score(predictions)


def test_the_evaluation_files(tmp_path):
    predictions = hand_made()
    summary = write_evaluation(tmp_path, predictions, score(predictions), {"run": "hand", "split": "val"})
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved == summary and saved["field_accuracy"] == pytest.approx(0.4) and saved["treatments"] == 2
    rows = list(csv.reader(open(tmp_path / "confusion_treatments.csv")))
    assert rows[0] == ["true \\ predicted", *LABELS] and rows[2] == ["Eg5 inhibitors", "1", "0", "0"]
    for name in ("fields", "treatments"):
        assert (tmp_path / f"confusion_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    predicted = [r["predicted"] for r in csv.DictReader(open(tmp_path / "predictions.csv"))]
    assert predicted == ["Eg5 inhibitors", "Actin disruptors", "Eg5 inhibitors", "Actin disruptors", "DMSO"]


# --- through the command line, on tiny trained runs ----------------------------------------------


@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    """Two weeks (plates), one field per class each; kept: DMSO and two classes of two compounds each,
    one compound per week -> 6 fields, 4 NSC/NSCB folds."""
    data = tmp_path_factory.mktemp("three")
    write_dataset(data, plates=2, fields_per_class=1, size=SIZE, seed=4)
    return only_classes(data)


def test_fold_choice(three_classes):
    def load():
        return load_fields(three_classes)

    assert chosen_folds(load, "stratified", None) == ([None], [])
    chosen, skipped = chosen_folds(load, "nscb", "all")
    assert [f.compound for f in chosen] == ["AZ-C", "AZ138", "cytochalasin B", "cytochalasin D"] and not skipped
    with pytest.raises(SplitError, match="0 to 3"):
        chosen_folds(load, "nsc", "4")
    with pytest.raises(SplitError, match="--fold K"):
        chosen_folds(load, "nsc", None)
    with pytest.raises(SplitError, match="nsc or nscb"):
        chosen_folds(load, "stratified", "1")


def test_nscb_folds_trained_and_evaluated_pooled(three_classes, tmp_path):
    run = tmp_path / "nscb"
    runner = CliRunner()
    result = runner.invoke(
        app, command_line("train", three_classes, out=run, split="nscb", fold="all", target_acc=0, **ONE_EPOCH)
    )
    assert result.exit_code == 0, result.output
    folds = sorted(p.name for p in run.glob("fold-*"))
    assert folds == ["fold-0", "fold-1", "fold-2", "fold-3"]
    for k, compound in enumerate(["AZ-C", "AZ138", "cytochalasin B", "cytochalasin D"]):
        fields = {f"{f.plate}/{f.well}/{f.site}": f for f in load_fields(three_classes)}
        rows = list(csv.DictReader(open(run / f"fold-{k}" / "split.csv")))
        val = [fields[f"{r['plate']}/{r['well']}/{r['site']}"] for r in rows if r["split"] == "val"]
        train = [fields[f"{r['plate']}/{r['well']}/{r['site']}"] for r in rows if r["split"] == "train"]
        assert {f.compound for f in val} == {compound}
        assert len(train) == 3 and not {f.week for f in val} & {f.week for f in train}  # the other week only

    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert "Eg5 inhibitors" in result.stdout and "treatments" in result.stdout
    summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert summary["folds"] == folds and summary["fields"] == 4 and summary["treatments"] == 4
    assert (
        np.loadtxt(run / "evaluation" / "confusion_fields.csv", delimiter=",", skiprows=1, usecols=range(1, 4)).sum()
        == 4
    )
    # Each fold scored alone agrees with the validation accuracy its training measured (fp32, same fields).
    pooled = 0.0
    for name in folds:
        fold_summary = json.loads((run / name / "evaluation" / "evaluation.json").read_text())
        [metrics] = list(csv.DictReader(open(run / name / "metrics.csv")))
        assert fold_summary["field_accuracy"] == pytest.approx(float(metrics["val_acc"]), abs=1e-4)
        pooled += fold_summary["field_accuracy"] / len(folds)
    assert summary["field_accuracy"] == pytest.approx(pooled)  # one field per fold: the pooled mean

    # The embedding metrics: each fold's held-out treatment against the treatments its model trained on
    # (the other week's: NSCB folds), in that model's space; pooled over folds. Worked out again here.
    assert "NSC 1-NN accuracy" in result.stdout and "mAP, same MoA" in result.stdout
    hits = [nearest_is_same_moa(run / name, load_fields(three_classes)) for name in folds]
    for name, hit in zip(folds, hits):
        embedding = json.loads((run / name / "evaluation" / "evaluation.json").read_text())["embedding"]
        assert embedding["nsc_1nn"] == embedding["nscb_1nn"] == {"accuracy": float(hit), "scored": 1, "of": 1}
        assert embedding["map_same_moa"]["scored"] == 1 and embedding["map_same_moa"]["mean"] == (1.0 if hit else 0.5)
    pooled = summary["embedding"]
    assert pooled["nsc_1nn"] == pooled["nscb_1nn"] == {"accuracy": sum(hits) / 4, "scored": 4, "of": 4}
    per_moa = pooled["map_same_moa"]["per_moa"]
    assert set(per_moa) == {"Actin disruptors", "Eg5 inhibitors"} and pooled["map_same_moa"]["scored"] == 4
    assert pooled["map_same_moa"]["mean"] == pytest.approx(np.mean([m["map"] for m in per_moa.values()]))
    # One fold run scored alone takes the same neighbours (the treatments it trained on)
    fold_0 = json.loads((run / "fold-0" / "evaluation" / "evaluation.json").read_text())["embedding"]
    result = runner.invoke(app, ["evaluate", str(run / "fold-0")])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "fold-0" / "evaluation" / "evaluation.json").read_text())["embedding"] == fold_0


def nearest_is_same_moa(run: Path, data_fields: list[Field]) -> bool:
    """With numpy alone: is the run's held-out field (one treatment) nearest, by cosine of the embeddings,
    to the training field (one treatment each, DMSO left out) of its own MoA? Two candidates: one per MoA."""
    from appliance.fieldsets import from_split, read_raw
    from training.predict import load_predictor

    by_key = {(f.plate, f.well, f.site): f for f in data_fields}
    rows = [by_key[(r.plate, r.well, r.site)] for r in from_split(run) if r.moa != "DMSO"]
    split = {(r.plate, r.well, r.site): r.split for r in from_split(run)}
    [query] = [f for f in rows if split[(f.plate, f.well, f.site)] == "val"]
    references = [f for f in rows if split[(f.plate, f.well, f.site)] == "train"]
    predictor, _ = load_predictor(run)
    _, embeddings = predictor.predict(read_raw([query, *references], SIZE))
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    nearest = references[int(np.argmax(unit[1:] @ unit[0]))]
    assert len(references) == 2 and {f.moa for f in references} == set(LABELS[:2])
    return nearest.moa == query.moa


def test_evaluate_one_run_scores_what_it_can_read(three_classes, tmp_path):
    run = tmp_path / "nsc"
    runner = CliRunner()
    result = runner.invoke(app, command_line("train", three_classes, out=run, split="nsc", fold=0, **ONE_EPOCH))
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run), "--split", "all"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation" / "evaluation.json").read_text())["fields"] == 6
    torch_predictions = list(csv.DictReader(open(run / "evaluation" / "predictions.csv")))
    # The exported OpenVINO model scores the same fields (split.csv of the run it was exported from).
    export_run(run, parity_fields=1, log=lambda line: None)
    result = runner.invoke(app, ["evaluate", str(run / "export"), "--split", "all"])
    assert result.exit_code == 0, result.output
    openvino_predictions = list(csv.DictReader(open(run / "export" / "evaluation" / "predictions.csv")))
    assert [r["predicted"] for r in openvino_predictions] == [r["predicted"] for r in torch_predictions]
    openvino_summary = json.loads((run / "export" / "evaluation" / "evaluation.json").read_text())
    assert openvino_summary["model"] == "openvino"
    # the export's embedding output scores the same treatments (4, DMSO left out, one model's space)
    torch_summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    for key in ("nsc_1nn", "nscb_1nn"):
        assert openvino_summary["embedding"][key]["of"] == torch_summary["embedding"][key]["of"] == 4
    held_out = next(r for r in csv.DictReader(open(run / "split.csv")) if r["split"] == "val")
    truncate(Path(held_out["path_tubulin"]))
    result = runner.invoke(app, ["evaluate", str(run), "--split", "all"])
    assert result.exit_code == 1, result.output
    summary = json.loads((run / "evaluation" / "evaluation.json").read_text())
    assert summary["fields"] == 5 and len(summary["failed"]) == 1
    assert Path(held_out["path_tubulin"]).name in summary["failed"][0]["error"]
    result = runner.invoke(app, ["evaluate", str(run)])  # the only val field is unreadable: nothing to score
    assert result.exit_code == 2 and "could be read" in result.output
    info = json.loads((run / "run.json").read_text())
    assert info["train_config"]["split"] == "nsc" and info["train_config"]["fold"] == 0
    info["train_config"]["data"] = str(tmp_path / "moved")  # the data has moved since training
    (run / "run.json").write_text(json.dumps(info))
    result = runner.invoke(app, ["evaluate", str(run), "--split", "train"])
    assert result.exit_code == 2 and "--data" in result.output
    result = runner.invoke(app, ["evaluate", str(run), "--split", "train", "--data", str(three_classes)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation" / "evaluation.json").read_text())["fields"] == 5


def test_evaluate_names_what_is_wrong(tmp_path, three_classes):
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "run.json" in result.output
    result = CliRunner().invoke(
        app, command_line("train", three_classes, out=tmp_path / "r", split="nscb", fold=9, size="128x128")
    )
    assert result.exit_code == 2 and "0 to 3" in result.output


def only_classes(data: Path, labels=LABELS) -> Path:
    """Keep in data's image table only the fields of these classes."""
    keep = {f.compound for f in load_fields(data) if f.moa in labels}
    with open(data / IMAGE_CSV, newline="") as f:
        rows = list(csv.reader(f))
    compound = rows[0].index("Image_Metadata_Compound")
    with open(data / IMAGE_CSV, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if r[compound] in keep])
    return data


def test_evaluate_on_new_plates_and_a_run_without_validation_fields(tmp_path):
    """The demo's kind of run (trained on all its fields) scored on other labelled plates, torch and OpenVINO."""
    from rich.console import Console

    from training.recipes import TrainConfig
    from training.run import record_test_data
    from training.train import train

    three_classes = tmp_path / "three"  # not the module's: an earlier test truncates one of its files
    write_dataset(three_classes, plates=2, fields_per_class=1, size=SIZE, seed=4)
    only_classes(three_classes)
    new = tmp_path / "new"
    write_dataset(new, plates=1, fields_per_class=1, size=SIZE, seed=9, first_plate=5)
    new_fields = len(load_fields(only_classes(new)))
    run = tmp_path / "run"
    config = TrainConfig(
        data=str(three_classes), out=str(run), epochs=1, batch_size=2, size=SIZE, precision="fp32", workers=0
    )
    train(replace(config, val_fraction=0.0), console=Console(quiet=True))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 2 and "no val fields (the run trained on all its fields)" in result.output
    assert "--data NEW" in result.output

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(new)])
    assert result.exit_code == 0, result.output
    assert f"scored: the {new_fields} labelled fields of {new}" in result.output
    summary = json.loads((run / "evaluation" / "on-new" / "evaluation.json").read_text())
    assert summary["fields"] == new_fields and summary["split"] == "new" and summary["model"] == "torch"
    # one plate, one compound per class: NSC has a neighbour of another compound, NSCB none of another
    # week, mAP no same-MoA treatment of another compound: not scored, and said so
    embedding = summary["embedding"]
    assert embedding["nsc_1nn"]["scored"] == 2 and embedding["nsc_1nn"]["of"] == 2
    assert embedding["nscb_1nn"] == {"accuracy": None, "scored": 0, "of": 2}
    assert embedding["map_same_moa"] == {"mean": None, "scored": 0, "of": 2, "per_moa": {}}
    torch_predictions = list(csv.DictReader(open(run / "evaluation" / "on-new" / "predictions.csv")))

    export_run(run, parity_fields=1, log=lambda line: None)
    result = runner.invoke(app, ["evaluate", str(run / "export"), "--data", str(new)])
    assert result.exit_code == 0, result.output
    openvino_predictions = list(csv.DictReader(open(run / "export" / "evaluation" / "on-new" / "predictions.csv")))
    assert [r["predicted"] for r in openvino_predictions] == [r["predicted"] for r in torch_predictions]

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(three_classes)])  # every field trained on
    assert result.exit_code == 2 and "no val fields to score" in result.output
    record_test_data(run, new)  # as the demo names its held-out plate
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert "no validation fields" in result.output and "its held-out plates instead" in result.output
    assert json.loads((run / "run.json").read_text())["test_data"] == str(new.resolve())
