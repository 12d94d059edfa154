"""The embedding metrics on hand-built 2-d embeddings whose answers are worked out by hand."""

import numpy as np
import pytest

from appliance.layouts.base import Field
from training.profile_metrics import (
    embedding_scores,
    map_same_moa,
    nearest_neighbour_hits,
    nsc_accuracy,
    nscb_accuracy,
    table,
    treatment_profiles,
)


def at(degrees: float) -> list[float]:
    return [np.cos(np.radians(degrees)), np.sin(np.radians(degrees))]


def field(compound: str, moa: str, week: str = "Week1", concentration: float = 1.0) -> Field:
    return Field("P", "B02", 1, (), compound=compound, concentration=concentration, moa=moa, week=week)


def fields_at(rows: list[tuple[Field, list[float]]]):
    return [f for f, _ in rows], np.array([v for _, v in rows])


def seven_treatments():
    """Treatments as angles (cosine similarity only sees the angle):
    A1 a X W1 0° (median of 3 fields, one an outlier), A2 a X W1 1°, B b X W1 10°, C c X W2 30°,
    D d Y W2 22°, E e Z W1 90°, F f Y in both weeks 200° (median of 190° and 210°); a DMSO field."""
    rows = [
        (field("a", "X"), at(0)),
        (field("a", "X"), at(0)),
        (field("a", "X"), [-50.0, 50.0]),  # the median ignores it; a mean would point A1 at ~135°
        (field("a", "X", concentration=3.0), at(1)),
        (field("b", "X"), at(10)),
        (field("c", "X", "Week2"), at(30)),
        (field("d", "Y", "Week2"), at(22)),
        (field("e", "Z"), at(90)),
        (field("f", "Y", "Week1"), at(190)),
        (field("f", "Y", "Week2"), at(210)),
        (field("DMSO", "DMSO", concentration=0.0), at(0)),
    ]
    return treatment_profiles(*fields_at(rows))


def test_profiles_are_medians_of_treatments_without_the_control():
    profiles = seven_treatments()
    assert profiles.compound == ["a", "a", "b", "c", "d", "e", "f"]  # DMSO left out; a at two concentrations
    np.testing.assert_allclose(profiles.vectors[0], at(0))
    np.testing.assert_allclose(profiles.vectors[-1], np.median([at(190), at(210)], axis=0))
    assert profiles.batches[-1] == {"Week1", "Week2"} and all(profiles.query)


def test_nsc_excludes_the_same_compound():
    # A1, A2: nearest of another compound B -> X right (A2 at 1° would be A1's nearest, but is compound a);
    # B: A2 (9°) right; C: D (8°) Y wrong; D: C (8°) X wrong; E: C (60°) wrong; F: E (110°) wrong
    hits = nearest_neighbour_hits(seven_treatments(), same_batch_excluded=False)
    assert hits == [True, True, True, False, False, False, False]
    assert nsc_accuracy([seven_treatments()]) == {"accuracy": pytest.approx(3 / 7), "scored": 7, "of": 7}


def test_nscb_excludes_the_same_batch_and_does_not_score_a_treatment_without_neighbours():
    # week-1 A1, A2, B: nearest week-2 treatment D -> Y wrong; C: B right; D: B (12°) X wrong;
    # E: C wrong; F, imaged in both weeks, shares a week with every other treatment: not scored
    hits = nearest_neighbour_hits(seven_treatments(), same_batch_excluded=True)
    assert hits == [False, False, False, True, False, False, None]
    assert nscb_accuracy([seven_treatments()]) == {"accuracy": pytest.approx(1 / 6), "scored": 6, "of": 7}


def test_only_queries_are_scored_and_spaces_are_pooled():
    fields, vectors = fields_at([(field("a", "X"), at(0)), (field("b", "X"), at(5)), (field("c", "Y"), at(3))])
    references_only = treatment_profiles(fields, vectors, query=[True, False, False])
    assert nearest_neighbour_hits(references_only, same_batch_excluded=False) == [False]  # a's nearest: c
    alone = treatment_profiles(fields[:1], vectors[:1])  # one treatment: nothing to compare with
    assert nsc_accuracy([references_only, alone]) == {"accuracy": 0.0, "scored": 1, "of": 2}
    assert nsc_accuracy([alone]) == {"accuracy": None, "scored": 0, "of": 1}


def test_map_of_same_moa_retrieval_matches_a_hand_computed_average_precision():
    """P1 p X 0°, P1b p X 5° (another concentration), P2 q X 60°, N1 r Y 30°, N2 s Y 100°, Z1 z Z 180°.
    Ranked by cosine, positives = same MoA, other compound; the same compound is left out of the ranking:
    P1: N1, P2, N2, Z1 -> AP 1/2; P1b: the same -> 1/2; P2: N1 (30°), N2 (40°), P1b (55°), P1 (60°) ->
    (1/3 + 2/4) / 2 = 5/12; N1: P1b, P1 | P2 (tie), N2 -> 1/4; N2: P2, N1 -> 1/2; Z1: no positive.
    X: (1/2 + 1/2 + 5/12) / 3 = 17/36, Y: (1/4 + 1/2) / 2 = 3/8; mean over MoAs 61/144."""
    rows = [
        (field("p", "X"), at(0)),
        (field("p", "X", concentration=2.0), at(5)),
        (field("q", "X"), at(60)),
        (field("r", "Y"), at(30)),
        (field("s", "Y"), at(100)),
        (field("z", "Z"), at(180)),
    ]
    result = map_same_moa([treatment_profiles(*fields_at(rows))])
    assert result["scored"] == 5 and result["of"] == 6  # Z's only compound has no positive: not scored
    assert result["per_moa"]["X"]["map"] == pytest.approx(17 / 36)
    assert result["per_moa"]["Y"]["map"] == pytest.approx(3 / 8)
    assert set(result["per_moa"]) == {"X", "Y"} and result["per_moa"]["X"]["treatments"] == 3
    assert 0 < result["per_moa"]["X"]["p_value"] <= 1
    assert result["mean"] == pytest.approx(61 / 144)


def test_nothing_scorable_is_said_so():
    fields, vectors = fields_at([(field("a", "X"), at(0)), (field("a", "X", concentration=2.0), at(5))])
    scores = embedding_scores([treatment_profiles(fields, vectors)])
    assert scores["nsc_1nn"] == {"accuracy": None, "scored": 0, "of": 2}
    assert scores["map_same_moa"] == {"mean": None, "scored": 0, "of": 2, "per_moa": {}}


def test_the_table_shows_what_was_scored_and_a_dash_for_nothing():
    import io

    from rich.console import Console

    fields, vectors = fields_at([(field("a", "X"), at(0)), (field("a", "X", concentration=2.0), at(5))])
    embedding = embedding_scores([treatment_profiles(fields, vectors)])
    summary = {"treatment_accuracy": 0.5, "treatments": 2, "embedding": embedding}
    out = io.StringIO()
    Console(file=out, width=200).print(table(summary))
    lines = out.getvalue().splitlines()
    assert next(line for line in lines if "classifier accuracy" in line).split()[-2:] == ["50.0", "2"]
    assert next(line for line in lines if "NSC 1-NN" in line).split()[-4:] == ["-", "0", "of", "2"]
    assert next(line for line in lines if "mAP, same MoA" in line).split()[-4:] == ["-", "0", "of", "2"]
