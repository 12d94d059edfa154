"""The field's embedding metrics, on treatment profiles: NSC / NSCB 1-NN (Ljosa et al. 2013) and mAP.

    field embeddings (the M-CNN's 512 features before the head)
    -> treatment profiles: per-feature median of the fields of one compound-concentration (DMSO left out)
    -> NSC 1-NN: a treatment takes the MoA of its most cosine-similar treatment of another compound
    -> NSCB 1-NN: ... of another compound and of no batch (BBBC021: week) the treatment was imaged in
    -> mAP: copairs' average precision of ranking the other treatments by cosine similarity, positives
       the same MoA's treatments of other compounds, negatives other MoAs' treatments; mean per MoA

A treatment with no eligible neighbour (its MoA's only compound, say) is not scored; every
figure says how many treatments it scored of how many. Profiles compared must come from one
model: `train --fold all` folds are scored each in its own model's space (`Profiles` per fold), the
hits and average precisions then pooled. Only treatments marked `query` are scored; the others
(a fold's training treatments) are neighbours only. copairs is imported when mAP is computed.
`table` prints them beside the classifier's treatment accuracy (`evaluate`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
from rich import box
from rich.table import Table

from appliance.layouts.base import Field
from appliance.layouts.bbbc021 import concentration_key
from appliance.result_rows import natural_key
from training.splits import CONTROL

MAP_NULL_SIZE = 10_000  # copairs' null distribution of AP, for the p-value of each MoA's mAP
MAP_SIGNIFICANCE = 0.05


@dataclass
class Profiles:
    """Treatment profiles of one model, and what each treatment is."""

    vectors: np.ndarray  # (treatments, features)
    moa: list[str]
    compound: list[str]
    batches: list[frozenset[str]]  # the batches (weeks) its fields were imaged in
    query: list[bool]  # scored; False: a neighbour only


def treatment_profiles(fields: list[Field], embeddings: np.ndarray, query: list[bool] | None = None) -> Profiles:
    """Per-feature median of each treatment's field embeddings; a treatment is a query when any of its
    fields is (`query` per field; default all). The control (DMSO) is left out, as in Ljosa et al."""
    query = [True] * len(fields) if query is None else query
    groups: dict[tuple[str, float], list[int]] = {}
    for i, f in enumerate(fields):
        if f.moa != CONTROL:
            groups.setdefault((f.compound, concentration_key(f.concentration)), []).append(i)
    keys = sorted(groups, key=lambda k: (natural_key(k[0]), k[1]))
    width = embeddings.shape[1] if embeddings.ndim == 2 else 0
    vectors = np.array([np.median(embeddings[groups[k]], axis=0) for k in keys]).reshape(len(keys), width)
    return Profiles(
        vectors,
        [fields[groups[k][0]].moa for k in keys],
        [k[0] for k in keys],
        [frozenset(str(fields[i].week) for i in groups[k]) for k in keys],
        [any(query[i] for i in groups[k]) for k in keys],
    )


def cosine_similarities(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)  # an all-zero profile is similar to nothing (0)
    return unit @ unit.T


def nearest_neighbour_hits(profiles: Profiles, same_batch_excluded: bool) -> list[bool | None]:
    """Per query treatment: does its nearest eligible neighbour (cosine) have its MoA? None: no eligible
    neighbour. Eligible: another compound (NSC) and, with `same_batch_excluded` (NSCB), no batch in
    common: a treatment imaged in several weeks excludes neighbours imaged in any of them."""
    similarity = cosine_similarities(profiles.vectors)
    hits: list[bool | None] = []
    for i in (i for i, q in enumerate(profiles.query) if q):
        eligible = [
            j
            for j in range(len(profiles.moa))
            if profiles.compound[j] != profiles.compound[i]
            and not (same_batch_excluded and profiles.batches[i] & profiles.batches[j])
        ]
        if not eligible:
            hits.append(None)
            continue
        nearest = max(eligible, key=lambda j: similarity[i, j])  # a tie: the first in treatment order
        hits.append(profiles.moa[nearest] == profiles.moa[i])
    return hits


def tally(hits: list[bool | None]) -> dict:
    """{"accuracy": right / scored (None if nothing scored), "scored": ..., "of": all query treatments}."""
    scored = [h for h in hits if h is not None]
    return {"accuracy": sum(scored) / len(scored) if scored else None, "scored": len(scored), "of": len(hits)}


def nsc_accuracy(spaces: list[Profiles]) -> dict:
    return tally([h for p in spaces for h in nearest_neighbour_hits(p, same_batch_excluded=False)])


def nscb_accuracy(spaces: list[Profiles]) -> dict:
    return tally([h for p in spaces for h in nearest_neighbour_hits(p, same_batch_excluded=True)])


def average_precisions(profiles: Profiles):
    """copairs' AP of each query treatment (a pandas DataFrame: moa, compound, average_precision,
    n_pos_pairs, ...); a treatment without a same-MoA treatment of another compound has no AP (NaN)."""
    import pandas as pd
    from copairs.map import average_precision
    from copairs.matching import UnpairedException

    meta = pd.DataFrame({"moa": profiles.moa, "compound": profiles.compound, "query": profiles.query})
    unscorable = meta.assign(average_precision=np.nan, n_pos_pairs=0, n_total_pairs=0)
    if len(meta) < 2 or not any(profiles.query):
        return unscorable[unscorable["query"]]
    try:
        ap = average_precision(
            meta,
            profiles.vectors,
            pos_sameby=["moa"],
            pos_diffby=["compound"],  # not the same compound: as NSC
            neg_sameby=[],
            neg_diffby=["moa"],
            distance="cosine",
            progress_bar=False,
        )
    except UnpairedException:  # no positive (or no negative) pair at all: nothing scorable here
        ap = unscorable
    return ap[ap["query"]]


def map_same_moa(spaces: list[Profiles]) -> dict:
    """Mean over MoAs of each MoA's mAP (copairs' mean_average_precision, its p-value FDR-corrected)."""
    import pandas as pd
    from copairs.map import mean_average_precision

    ap = pd.concat([average_precisions(p) for p in spaces], ignore_index=True)
    scorable = ap[ap["average_precision"].notna() & (ap["n_pos_pairs"] > 0)]
    result = {"mean": None, "scored": len(scorable), "of": len(ap), "per_moa": {}}
    if scorable.empty:
        return result
    with tempfile.TemporaryDirectory() as cache:  # copairs caches null distributions, by default in ~/.copairs
        per_moa = mean_average_precision(
            scorable, ["moa"], MAP_NULL_SIZE, MAP_SIGNIFICANCE, seed=0, progress_bar=False, cache_dir=cache
        )
    for row in per_moa.itertuples():
        result["per_moa"][row.moa] = {
            "map": float(row.mean_average_precision),
            "p_value": float(row.corrected_p_value),
            "treatments": int((scorable["moa"] == row.moa).sum()),
        }
    result["mean"] = float(np.mean([m["map"] for m in result["per_moa"].values()]))
    return result


def embedding_scores(spaces: list[Profiles]) -> dict:
    """evaluation.json's "embedding": the three metrics over the query treatments of every space."""
    return {
        "profile": "per-feature median of a treatment's field embeddings; cosine similarity; DMSO left out",
        "nsc_1nn": nsc_accuracy(spaces),
        "nscb_1nn": nscb_accuracy(spaces),
        "map_same_moa": map_same_moa(spaces),
    }


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def table(summary: dict) -> Table:
    """The classifier's treatment accuracy beside the embedding metrics, each with the treatments it scored."""
    embedding = summary["embedding"]
    out = Table(
        "treatment score",
        "value",
        "treatments scored",
        box=box.SIMPLE_HEAD,
        title="classifier and 512-d embeddings",
        caption="DMSO excluded. Embeddings: treatment = median of its fields; NSC: nearest treatment "
        "(cosine) of another compound; NSCB: and of another week; mAP: same-MoA treatments of other "
        "compounds retrieved, mean over MoAs",
    )
    out.add_row("classifier accuracy, %", percent(summary["treatment_accuracy"]), str(summary["treatments"]))
    for name, key in (("NSC 1-NN accuracy, %", "nsc_1nn"), ("NSCB 1-NN accuracy, %", "nscb_1nn")):
        part = embedding[key]
        out.add_row(name, percent(part["accuracy"]), f"{part['scored']} of {part['of']}")
    retrieval = embedding["map_same_moa"]
    mean = "-" if retrieval["mean"] is None else f"{retrieval['mean']:.3f}"
    out.add_row("mAP, same MoA (0 to 1)", mean, f"{retrieval['scored']} of {retrieval['of']}")
    return out
