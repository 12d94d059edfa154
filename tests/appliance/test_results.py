"""PlateResults: built once from field rows, it derives wells, treatments, counts and the file list itself.

`made_results` builds one the way classify does (field rows from Fields and probabilities), for
the tests of the result files and the report too.
"""

import numpy as np
import pytest

from appliance.layouts.base import Failure, Field
from appliance.result_rows import failure_row, field_row, probability_column
from appliance.results import PlateResults

LABELS = ("Actin disruptors", "DMSO", "Microtubule stabilizers")
CHANNELS = ("DAPI", "Tubulin", "Actin")
RUN = {
    "plate": "P1",
    "plate_dir": "/plates/P1",
    "layout": "bbbc021",
    "shard": "0/1",
    "precision": "f32",
    "fit": None,
    "model": {"xml": "/models/model.xml", "run_id": "run-2026-11-25-abc", "weights_sha256": "ab" * 32},
    "versions": {"mcnn-appliance": "0.1.0", "openvino": "2025.3"},
    "counts": {"fields": None, "skipped_done": 0},
    "timings": {"discover_s": 0.12, "classify_s": 10.5, "total_s": 11.0},
    "fields_per_s": 3.81,
    "interrupted": False,
    "finished": "2026-11-25T10:00:00+00:00",
}


def made_results(
    out, wells, sites=2, failures=(), compounds=None, labels=LABELS, seed=0, run=None, embeddings=False
) -> PlateResults:
    """Well i favours class i % len(labels), more or less surely; failures: (well, site, file, reason)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, well in enumerate(wells):
        compound = (compounds or {}).get(well)
        for site in range(1, sites + 1):
            p = rng.dirichlet(np.ones(len(labels)))
            p[i % len(labels)] += 2.0 + i % 3  # wells of varied confidence
            field = Field(
                "P1",
                well,
                site,
                tuple(f"/p/{well}_s{site}_w{n}.tif" for n in (1, 2, 4)),
                compound=compound,
                concentration=0.1 if compound else None,
            )
            rows.append(field_row(field, "", p / p.sum(), labels, CHANNELS, "ab" * 32, "f32"))
    failed = [failure_row(Failure("P1", w, s, f, r)) for w, s, f, r in failures]
    info = {**RUN, "counts": {"fields": len(rows) + len(failed), "skipped_done": 0}, **(run or {})}
    vectors = rng.normal(size=(len(rows), 8)).astype(np.float32) if embeddings else None
    return PlateResults(out, labels, CHANNELS, rows, failed, info, vectors)


def test_wells_and_treatments_are_derived_from_the_field_rows(tmp_path):
    results = made_results(tmp_path, ["B02", "B03", "C02"], sites=3, compounds={"B02": "taxol", "B03": "taxol"})
    assert [(w["Metadata_Well"], w["Count_Fields"]) for w in results.wells] == [("B02", 3), ("B03", 3), ("C02", 3)]
    b02 = [f for f in results.fields if f["Metadata_Well"] == "B02"]
    for label in LABELS:
        assert results.wells[0][probability_column(label)] == pytest.approx(
            np.mean([f[probability_column(label)] for f in b02])
        )
    (taxol,) = results.treatments  # C02's compound is unknown: no treatment
    assert (taxol["Metadata_Compound"], taxol["Count_Wells"], taxol["Count_Fields"]) == ("taxol", 2, 6)


def test_the_summary_takes_counts_labels_and_files_from_the_rows(tmp_path):
    results = made_results(
        tmp_path,
        ["B02", "B03"],
        failures=[("C02", 1, "x.tif", "not a TIFF")],
        run={"counts": {"fields": 9, "skipped_done": 2}},
    )
    summary = results.summary
    assert summary["counts"] == {"fields": 9, "classified": 4, "failed": 1, "skipped_done": 2}
    assert summary["model"]["labels"] == list(LABELS) and summary["model"]["run_id"] == "run-2026-11-25-abc"
    assert summary["out"] == str(tmp_path) and summary["finished"] == RUN["finished"]
    assert summary["files"] == {
        "fields": "fields.csv",
        "fields_parquet": "fields.parquet",
        "wells": "wells.csv",
        "failures": "failures.csv",
        "report": "report.html",
    }
    with_all = made_results(tmp_path, ["B02"], compounds={"B02": "taxol"}, embeddings=True)
    assert with_all.files["treatments"] == "treatments.csv" and with_all.files["embeddings"] == "embeddings.parquet"


def test_embeddings_must_be_one_per_field(tmp_path):
    results = made_results(tmp_path, ["B02"], embeddings=True)
    with pytest.raises(ValueError, match="1 embeddings for 2 fields"):
        PlateResults(tmp_path, LABELS, CHANNELS, results.fields, [], RUN, results.embeddings[:1])


def test_results_folders_are_told_from_plates(tmp_path):
    """What `classify data/*/*` skips: our results (summary.json, .partial/, run.json, watch-ledger.json, the old
    <plate>-results name), and a folder holding only those (results/); never a plate or an empty folder."""
    from appliance.results import is_results_folder
    from tests.conftest import write_plate

    write_plate(tmp_path / "P1", wells=("B02",), sites=(1,))
    (tmp_path / "P1-results").mkdir()
    for name, marker in (("a", "summary.json"), ("b", "run.json"), ("c", "watch-ledger.json")):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / marker).write_text("{}")
    (tmp_path / "results" / "d" / ".partial").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    assert [p.name for p in sorted(tmp_path.iterdir()) if is_results_folder(p)] == ["P1-results", "results"]
    assert all(is_results_folder(p) for p in (tmp_path / "results").iterdir())
