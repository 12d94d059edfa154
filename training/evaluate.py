"""Scoring a trained model on a run's held-out fields, as the BBBC021 literature scores it.

    model + split.csv rows (default: val) + the data's metadata (compound, concentration)
    -> probabilities per field                        field accuracy, field confusion
    -> treatments: the fields of one compound-concentration, probabilities averaged,
       class = argmax of the mean                     treatment accuracy, treatment confusion
    -> embeddings (the features before the head) -> treatment profiles
                                                      NSC, NSCB 1-NN accuracy, same-MoA mAP (profile_metrics.py)
    -> RUN/evaluation/: evaluation.json, predictions.csv, treatments.csv,
       confusion_{fields,treatments}.{csv,png}

The model is the run's torch model (run.json + weights.safetensors) or, for an export folder
(model.xml), the OpenVINO model, scored on the split.csv of the run it was exported from, or
(--data NEW) on any labelled plates: all their labelled fields but those the run trained on,
written to evaluation/on-NEW/. A run without validation fields (the demo's) is scored on the
held-out plates its run.json names (test_data). Which fields were scored is said and recorded.
Treatment scores leave out the control (DMSO), as the literature's 103 treatments do; field
scores count every scored field. A folder of `train --fold all` runs (fold-K sub-folders) is
scored fold by fold, and the held-out fields of all folds pooled into one evaluation: the NSC
(or NSCB) figure; the embedding metrics compare each fold's held-out treatments with the
treatments that fold trained on, in that fold's model's space (a single NSC or NSCB fold run
alike). A field that cannot be read is listed in `failed`, the others are scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich import box
from rich.table import Table

from appliance.fieldsets import SPLIT_CSV, from_split
from appliance.files import write_atomically, write_json
from appliance.imageio import FieldError, read_field
from appliance.layouts.base import Field
from appliance.layouts.bbbc021 import IMAGE_CSV, concentration_key, load_fields
from appliance.result_rows import natural_key
from training.profile_metrics import Profiles, embedding_scores, treatment_profiles
from training.splits import CONTROL
from training.tables import write_csv

EVALUATION_DIR = "evaluation"
SPLIT_CHOICES = ("val", "train", "all")


class EvaluationError(ValueError):
    """Nothing can be scored; the message names the file and what is wrong."""


@dataclass
class Predictions:
    """Class probabilities (in `labels` order) for each scored field; fields that failed to read."""

    labels: tuple[str, ...]
    fields: list[Field]
    probabilities: np.ndarray  # (fields, classes)
    failed: list[dict] = field(default_factory=list)  # {"field", "error"}
    embeddings: np.ndarray | None = None  # (fields, features): the model's features before its head


@dataclass
class Scores:
    labels: tuple[str, ...]
    field_confusion: np.ndarray  # rows: true class, columns: predicted class
    treatment_confusion: np.ndarray
    treatments: list[dict]  # compound, concentration, moa, predicted, fields, probability

    @property
    def field_accuracy(self) -> float | None:
        return ratio(np.trace(self.field_confusion), self.field_confusion.sum())

    @property
    def treatment_accuracy(self) -> float | None:
        return ratio(np.trace(self.treatment_confusion), self.treatment_confusion.sum())

    def per_class(self) -> list[dict]:
        """Each class scored or predicted: field precision and recall, treatment accuracy (its treatments
        classified right: the literature's per-MoA accuracy) and treatment precision."""
        rows = []
        for i, name in enumerate(self.labels):
            f, t = self.field_confusion, self.treatment_confusion
            if not (f[i].sum() or f[:, i].sum()):
                continue
            rows.append(
                {
                    "class": name,
                    "fields": int(f[i].sum()),
                    "field_precision": ratio(f[i, i], f[:, i].sum()),
                    "field_recall": ratio(f[i, i], f[i].sum()),
                    "treatments": int(t[i].sum()),
                    "treatment_accuracy": ratio(t[i, i], t[i].sum()),
                    "treatment_precision": ratio(t[i, i], t[:, i].sum()),
                }
            )
        return rows


def ratio(numerator, denominator) -> float | None:
    """numerator / denominator, None when there is nothing to divide (an undefined precision, say)."""
    return float(numerator) / float(denominator) if denominator else None


def confusion(truth: list[str], predicted: list[str], labels: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(truth, predicted):
        matrix[index[t], index[p]] += 1
    return matrix


def treatment_means(fields: list[Field], probabilities: np.ndarray) -> list[tuple[Field, np.ndarray, int]]:
    """(a field of the treatment, mean probabilities, number of fields) per compound-concentration."""
    groups: dict[tuple[str, float], list[int]] = {}
    for i, f in enumerate(fields):
        groups.setdefault((f.compound, concentration_key(f.concentration)), []).append(i)
    out = []
    for key in sorted(groups, key=lambda k: (natural_key(k[0]), k[1])):  # as classify lists treatments
        members = groups[key]
        moas = {fields[i].moa for i in members}
        if len(moas) > 1:
            raise EvaluationError(f"treatment {key[0]} at {key[1]:g} is labelled {', '.join(sorted(map(str, moas)))}")
        out.append((fields[members[0]], probabilities[members].mean(axis=0), len(members)))
    return out


def score(predictions: Predictions) -> Scores:
    """Field and treatment confusion matrices from field probabilities (pure: no model, no files)."""
    labels = predictions.labels
    unknown = sorted({str(f.moa) for f in predictions.fields} - set(labels))
    if unknown:
        raise EvaluationError(f"fields labelled {', '.join(unknown)}: not classes of this model ({', '.join(labels)})")
    chosen = [labels[i] for i in np.argmax(predictions.probabilities, axis=1)] if predictions.fields else []
    field_confusion = confusion([f.moa for f in predictions.fields], chosen, labels)
    treatments = []
    for example, mean, count in treatment_means(predictions.fields, predictions.probabilities):
        if example.moa == CONTROL:
            continue
        best = int(np.argmax(mean))
        treatments.append(
            {
                "compound": example.compound,
                "concentration": example.concentration,
                "moa": example.moa,
                "predicted": labels[best],
                "fields": count,
                "probability": round(float(mean[best]), 4),
            }
        )
    treatment_confusion = confusion([t["moa"] for t in treatments], [t["predicted"] for t in treatments], labels)
    return Scores(labels, field_confusion, treatment_confusion, treatments)


# --- reading a run and predicting -------------------------------------------------------------


@dataclass
class Chosen:
    """The fields to score, what they are (said to the user and recorded), and where the scores go."""

    fields: list[Field]
    what: str  # "the 13 val fields of split.csv", "the 26 labelled fields of /data/new", ...
    split: str  # val, train, all, or the new data folder's name
    out: str = EVALUATION_DIR  # relative to the run (or export) folder


def labelled_by_name(data: Path) -> dict[str, Field]:
    return {f.name: f for f in load_fields(data)}


def split_fields(run_dir: Path, data: Path, split: str, rows: list[Field], by_name: dict[str, Field]) -> Chosen:
    """The split.csv rows of `split` (val, train or all), as the data's fields (with compound and concentration)."""
    split_csv = Path(run_dir) / SPLIT_CSV
    chosen = [r for r in rows if split == "all" or r.split == split]
    if not chosen:
        raise EvaluationError(f"{split_csv}: no {split} fields to score")
    missing = [r.name for r in chosen if r.name not in by_name]
    if missing:
        raise EvaluationError(
            f"{data}: {len(missing)} field(s) of {split_csv} are not among its labelled fields "
            f"(first: {missing[0]}); pass the data the run was trained on with --data"
        )
    relabelled = [r.name for r in chosen if r.moa != by_name[r.name].moa]
    if relabelled:
        raise EvaluationError(
            f"{data}: {len(relabelled)} field(s) labelled otherwise than in {split_csv} (first: {relabelled[0]})"
        )
    what = f"the {len(chosen)} {'' if split == 'all' else split + ' '}fields of {split_csv}"
    return Chosen([by_name[r.name] for r in chosen], what, split)


def new_data_fields(run_dir: Path, data: Path, rows: list[Field], why: str = "") -> Chosen:
    """Every labelled field of `data` but those the run trained on (they would flatter it)."""
    trained = {r.name for r in rows if r.split == "train"}
    labelled = load_fields(data)
    kept = [f for f in labelled if f.name not in trained]
    left_out = len(labelled) - len(kept)
    if not kept:
        raise EvaluationError(
            f"{data}: no labelled field to score"
            + (f" (its {left_out} labelled fields were all trained on by {run_dir})" if left_out else "")
        )
    what = f"{why}the {len(kept)} labelled fields of {data}" + (
        f" ({left_out} field(s) the run trained on left out)" if left_out else ""
    )
    return Chosen(kept, what, data.name, f"{EVALUATION_DIR}/on-{data.name}")


def choose_fields(run_dir: Path, info: dict, data: Path | None, split: str = "val") -> Chosen:
    """What `evaluate` scores:
    - without --data: the run's `split` fields of the data it was trained on; a run holding no
      validation fields (the demo's trains on all) is scored on its held-out plates (run.json test_data);
    - with --data of the run's own fields (the data moved): the same;
    - with --data of other labelled plates: all their labelled fields, the run's training fields left out.
    """
    if split not in SPLIT_CHOICES:
        raise EvaluationError(f"split must be one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
    split_csv = Path(run_dir) / SPLIT_CSV
    if not split_csv.is_file():
        raise EvaluationError(f"{split_csv}: not found; `train` writes it into every run")
    rows = from_split(run_dir)
    if data is not None:
        data = Path(data).resolve()
        by_name = labelled_by_name(data)
        if rows and all(r.name in by_name for r in rows):  # the run's own data, wherever it lies now
            return split_fields(run_dir, data, split, rows, by_name)
        return new_data_fields(run_dir, data, rows)
    if not info.get("train_config", {}).get("data"):
        raise EvaluationError(f"{run_dir / 'run.json'} records no training data; pass the data folder with --data")
    data = Path(info["train_config"]["data"])
    if not (data / IMAGE_CSV).is_file():
        raise EvaluationError(
            f"{data / IMAGE_CSV} (the data {run_dir / 'run.json'} was trained on): not found; "
            f"pass the data folder with --data"
        )
    if split == "val" and not any(r.split == "val" for r in rows):
        if info.get("test_data"):
            why = f"no validation fields in {split_csv} (the run trained on all): its held-out plates instead, "
            return new_data_fields(run_dir, Path(info["test_data"]), rows, why)
        raise EvaluationError(
            f"{split_csv}: no val fields (the run trained on all its fields); score it on other labelled "
            f"plates with --data NEW, or on its training fields with --split train"
        )
    by_name = labelled_by_name(data)
    if info["train_config"].get("val_data"):  # validated on other plates (train --val-data): the val rows are theirs
        by_name |= labelled_by_name(Path(info["train_config"]["val_data"]))
    return split_fields(run_dir, data, split, rows, by_name)


def predict(
    classify: Callable[[np.ndarray], np.ndarray],
    fields: list[Field],
    labels: tuple[str, ...],
    size: tuple[int, int],
    batch_size: int = 4,
) -> Predictions:
    """Probabilities and embeddings of every readable field; `classify` maps uint16 (N, C, H, W) to
    (probabilities (N, classes), embeddings (N, features))."""
    scored, probabilities, embeddings, failed = [], [], [], []
    for start in range(0, len(fields), batch_size):
        batch, raw = [], []
        for f in fields[start : start + batch_size]:
            try:
                raw.append(read_field(f.paths, size))
                batch.append(f)
            except FieldError as exc:
                failed.append({"field": f"{f.plate}/{f.well}/s{f.site}", "error": str(exc)})
        if batch:
            p, e = classify(np.stack(raw))
            probabilities.append(np.asarray(p, dtype=np.float64))
            embeddings.append(np.asarray(e, dtype=np.float64))
            scored += batch
    if not scored:
        return Predictions(tuple(labels), [], np.zeros((0, len(labels))), failed, np.zeros((0, 0)))
    return Predictions(tuple(labels), scored, np.concatenate(probabilities), failed, np.concatenate(embeddings))


def torch_classifier(run_dir: Path):
    """(classify, labels, size, run.json) of a run's torch model, in fp32 (training/predict.py);
    classify gives probabilities and embeddings."""
    from training.predict import load_predictor

    predictor, info = load_predictor(run_dir)
    return predictor.predict, predictor.card.labels, predictor.card.size, info


def openvino_classifier(model_dir: Path):
    """(classify, labels, size) of an exported OpenVINO model, at the precision classify would choose (auto);
    classify gives probabilities and embeddings."""
    from appliance.console import say
    from appliance.inference import Classifier

    classifier = Classifier(model_dir)
    say(f"precision {classifier.choice.precision}: {classifier.choice.reason}")
    return classifier.predict, classifier.labels, classifier.size


def is_export(folder: Path) -> bool:
    return (Path(folder) / "model.xml").is_file()


def run_of(folder: Path) -> Path:
    """The run folder holding split.csv and run.json: the folder itself, or an export folder's parent."""
    folder = Path(folder)
    if is_export(folder) and not (folder / SPLIT_CSV).is_file() and (folder.parent / SPLIT_CSV).is_file():
        return folder.parent
    return folder


def fold_runs(folder: Path) -> list[Path]:
    """The fold-K runs of a `train --fold all` folder, in fold order (empty for a single run)."""
    runs = [p for p in Path(folder).glob("fold-*") if (p / "run.json").is_file() and p.name[5:].isdigit()]
    return sorted(runs, key=lambda p: int(p.name[5:]))


def predict_run(
    folder: Path, data: Path | None = None, split: str = "val", batch_size: int = 4
) -> tuple[Predictions, Chosen, Predictions | None]:
    """Predictions of one run's (or export folder's) model on the fields choose_fields picks and, for
    the val fields of a run held out by compound (NSC, NSCB folds), on its training fields: the
    embedding metrics' neighbours (the held-out compound has no other among the val fields)."""
    from training.run import read_run_info

    run_dir = run_of(folder)
    info = read_run_info(run_dir)
    chosen = choose_fields(run_dir, info, data, split)
    if is_export(folder):
        classify, labels, size = openvino_classifier(folder)
    else:
        classify, labels, size, _ = torch_classifier(run_dir)
    scored = predict(classify, chosen.fields, labels, size, batch_size)
    trained = None
    if split == "val" and chosen.out == EVALUATION_DIR:  # the run's own val fields, not other plates
        train_fields = choose_fields(run_dir, info, data, "train").fields
        if not treated_compounds(train_fields) & treated_compounds(chosen.fields):
            trained = predict(classify, train_fields, labels, size, batch_size)
            # a training field that cannot be read is a failure too, said as one
            scored.failed += [{**f, "error": f"(a training field, a neighbour) {f['error']}"} for f in trained.failed]
    return scored, chosen, trained


def treated_compounds(fields: list[Field]) -> set[str]:
    return {f.compound for f in fields if f.moa != CONTROL}


def profiles_of(scored: Predictions, references: Predictions | None = None) -> Profiles:
    """One model's treatment profiles: the scored fields' treatments are the queries, the references'
    (a fold's training fields) neighbours only."""
    parts = [(p, is_query) for p, is_query in ((scored, True), (references, False)) if p is not None and p.fields]
    if not parts:
        return treatment_profiles([], np.zeros((0, 0)))
    return treatment_profiles(
        [f for p, _ in parts for f in p.fields],
        np.concatenate([p.embeddings for p, _ in parts]),
        [is_query for p, is_query in parts for _ in p.fields],
    )


def evaluate_run(folder: Path, data: Path | None = None, split: str = "val", batch_size: int = 4) -> dict:
    """Score a run, an export folder, or a folder of fold-K runs (pooled); writes FOLDER/evaluation/."""
    folder = Path(folder)
    folds = fold_runs(folder) if not (folder / "run.json").is_file() and not is_export(folder) else []
    if folds:
        parts, spaces = [], []  # each fold's embeddings stay in its own model's space
        for run in folds:
            part, chosen, trained = predict_run(run, data, split, batch_size)
            spaces.append(profiles_of(part, trained))
            about = {"run": str(run), "split": chosen.split, "scored": chosen.what}
            write_evaluation(run / chosen.out, part, score(part), about, embedding_scores(spaces[-1:]))
            parts.append(part)
        if len({p.labels for p in parts}) > 1:
            raise EvaluationError(f"{folder}: the fold runs have different classes; they are not one experiment")
        predictions = Predictions(
            parts[0].labels,
            [f for p in parts for f in p.fields],
            np.concatenate([p.probabilities for p in parts]),
            [x for p in parts for x in p.failed],
        )  # no pooled embeddings: folds' models embed in different spaces, scored in `spaces` each apart
        about = {"run": str(folder), "split": chosen.split, "folds": [r.name for r in folds]}
        about["scored"] = f"each fold's {chosen.split} fields, pooled (per fold: fold-K/{chosen.out}/)"
    else:
        predictions, chosen, trained = predict_run(folder, data, split, batch_size)
        about = {"run": str(folder), "split": chosen.split, "scored": chosen.what}
        about["model"] = "openvino" if is_export(folder) else "torch"
        spaces = [profiles_of(predictions, trained)]
    if not predictions.fields:
        raise EvaluationError(
            f"{folder}: none of the {len(predictions.failed)} {split} field(s) could be read; "
            f"first: {predictions.failed[0]['error'] if predictions.failed else '-'}"
        )
    return write_evaluation(folder / chosen.out, predictions, score(predictions), about, embedding_scores(spaces))


# --- writing ----------------------------------------------------------------------------------


def write_evaluation(
    out: Path, predictions: Predictions, scores: Scores, about: dict, embedding: dict | None = None
) -> dict:
    """evaluation.json, predictions.csv, treatments.csv and the two confusion matrices (CSV and PNG);
    `embedding`: the embedding metrics (training/profile_metrics.py), into evaluation.json."""
    out.mkdir(parents=True, exist_ok=True)
    labels = scores.labels
    write_csv(
        out / "predictions.csv",
        ["plate", "well", "site", "compound", "concentration", "moa", "predicted", *labels],
        (
            [
                f.plate,
                f.well,
                f.site,
                f.compound,
                f.concentration,
                f.moa,
                labels[int(np.argmax(p))],
                *(f"{v:.5f}" for v in p),
            ]
            for f, p in zip(predictions.fields, predictions.probabilities)
        ),
    )
    columns = ("compound", "concentration", "moa", "predicted", "fields", "probability")
    write_csv(out / "treatments.csv", columns, ([t[c] for c in columns] for t in scores.treatments))
    for name, matrix, unit in (
        ("fields", scores.field_confusion, "fields"),
        ("treatments", scores.treatment_confusion, "treatments"),
    ):
        write_confusion_csv(out / f"confusion_{name}.csv", matrix, labels)
        plot_confusion(out / f"confusion_{name}.png", matrix, labels, f"{about['run']}: {about['split']} {unit}")
    summary = {
        **about,
        "labels": list(labels),
        "fields": len(predictions.fields),
        "treatments": len(scores.treatments),
        "field_accuracy": scores.field_accuracy,
        "treatment_accuracy": scores.treatment_accuracy,
        "classes": scores.per_class(),
        **({"embedding": embedding} if embedding is not None else {}),
        "failed": predictions.failed,
        "out": str(out),
    }
    write_json(out / "evaluation.json", summary)
    return summary


def write_confusion_csv(path: Path, matrix: np.ndarray, labels: tuple[str, ...]) -> None:
    write_csv(path, ["true \\ predicted", *labels], ([name, *row.tolist()] for name, row in zip(labels, matrix)))


def plot_confusion(path: Path, matrix: np.ndarray, labels: tuple[str, ...], title: str) -> None:
    """Counts, coloured by the fraction of each true class's row."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(labels), 1.5 + 0.5 * len(labels)))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j, i, str(count), ha="center", va="center", fontsize=8, color="white" if shares[i, j] > 0.5 else "black"
            )
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def show(value: float | None) -> str:
    """A fraction in percent; "-" where it is undefined."""
    return "-" if value is None else f"{100 * value:.1f}"


def table(summary: dict) -> Table:
    out = Table(
        "class",
        "fields",
        "precision",
        "recall",
        "treatments",
        "accuracy",
        box=box.SIMPLE_HEAD,
        title=f"{summary['run']} ({summary['split']})",
        caption=f"fields: {summary['fields']}, accuracy {show(summary['field_accuracy'])} %; "
        f"treatments: {summary['treatments']}, accuracy {show(summary['treatment_accuracy'])} % "
        f"(in %; precision, recall: of fields; accuracy: of treatments, DMSO excluded)",
    )
    out.columns[0].no_wrap = True
    for row in summary["classes"]:
        out.add_row(
            row["class"],
            str(row["fields"]),
            show(row["field_precision"]),
            show(row["field_recall"]),
            str(row["treatments"]),
            show(row["treatment_accuracy"]),
        )
    return out
