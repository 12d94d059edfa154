"""embeddings.parquet and profiles.parquet go through pycytominer and copairs as they are written.

pycytominer (1.7) infers a table's features from CellProfiler's compartment prefixes and its
metadata from `Metadata_` (pycytominer/cyto_utils/features.py, infer_cp_features); a whole-field
embedding is an image measurement, so its features are `Image_MCNN_000`... and pycytominer takes
them with `image_features=True`. The chain a JUMP profile goes through, aggregate -> normalize (to
the DMSO wells) -> feature_select, runs here on our files unchanged, then copairs' mean average
precision says whether replicate wells of a compound find one another. pycytominer and copairs
are in the `dev` extra (not the runtime's): the test is skipped, saying so, where they are missing.
"""

import numpy as np
import pytest

from appliance.layouts.base import Field
from appliance.result_files import write_results
from appliance.result_rows import field_row
from appliance.results import PlateResults

pycytominer = pytest.importorskip("pycytominer", reason="pycytominer is in the dev extra, not the runtime's")
copairs_map = pytest.importorskip("copairs.map", reason="copairs is in the dev extra, not the runtime's")
pd = pytest.importorskip("pandas")  # pycytominer's

LABELS = ("Actin disruptors", "DMSO", "Microtubule stabilizers")
CHANNELS = ("DAPI", "Tubulin", "Actin")
COMPOUNDS = {"DMSO": 0.0, "taxol": 3e-07, "cytochalasin B": 1e-05, "nocodazole": 1e-06}
WIDTH, SITES = 24, 3


def screened_plate(out) -> PlateResults:
    """Six replicate wells per compound on a 384-well plate, three fields each; a compound's fields lie
    around its own direction in embedding space (DMSO's around the origin), with noise."""
    rng = np.random.default_rng(7)
    direction = {name: rng.normal(size=WIDTH) * (0 if name == "DMSO" else 2) for name in COMPOUNDS}
    wells = [f"{row}{column:02d}" for row in "CDEFGHIJ" for column in range(3, 6)]  # 24 wells
    rows, vectors = [], []
    for i, well in enumerate(wells):
        compound = list(COMPOUNDS)[i % len(COMPOUNDS)]
        for site in range(1, SITES + 1):
            paths = tuple(f"/plates/P7/{well}_s{site}_w{n}.tif" for n in (1, 2, 4))
            field = Field("P7", well, site, paths, compound=compound, concentration=COMPOUNDS[compound])
            probabilities = rng.dirichlet(np.ones(len(LABELS)))
            rows.append(field_row(field, "", probabilities, LABELS, CHANNELS, "ab" * 32, "f32"))
            vectors.append(direction[compound] + rng.normal(size=WIDTH))
    return PlateResults(out, LABELS, CHANNELS, rows, [], {"plate": "P7"}, np.array(vectors, dtype=np.float32))


def test_pycytominer_aggregates_normalizes_and_selects_our_files_and_copairs_finds_replicates(tmp_path):
    write_results(screened_plate(tmp_path))
    embeddings = pd.read_parquet(tmp_path / "embeddings.parquet")
    profiles = pd.read_parquet(tmp_path / "profiles.parquet")
    features = [f"Image_MCNN_{i:03d}" for i in range(WIDTH)]
    from pycytominer.cyto_utils import infer_cp_features

    assert infer_cp_features(embeddings, image_features=True) == features
    assert infer_cp_features(profiles, image_features=True) == features
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Compound", "Metadata_Concentration"} <= set(
        infer_cp_features(embeddings, metadata=True)
    )
    assert embeddings.loc[embeddings["Metadata_Compound"] == "taxol", "Metadata_Concentration"].iloc[0] == 3e-07

    # profiles.parquet is what pycytominer's median aggregation of embeddings.parquet gives
    strata = ["Metadata_Plate", "Metadata_Well", "Metadata_Compound", "Metadata_Concentration"]
    aggregated = pycytominer.aggregate(embeddings, strata=strata, features="infer", image_features=True)
    merged = aggregated.merge(profiles, on=strata, suffixes=("", "_ours"))
    assert len(merged) == len(profiles) == 24 and set(profiles["Metadata_Count_Fields"]) == {SITES}
    np.testing.assert_allclose(
        merged[features].to_numpy(), merged[[f + "_ours" for f in features]].to_numpy(), rtol=1e-6, atol=1e-6
    )

    normalized = pycytominer.normalize(
        profiles,
        features="infer",
        image_features=True,
        meta_features="infer",
        samples="Metadata_Compound == 'DMSO'",
        method="mad_robustize",
    )
    dmso = normalized[normalized["Metadata_Compound"] == "DMSO"][features]
    np.testing.assert_allclose(dmso.median(), 0.0, atol=1e-6)  # robustized to the DMSO wells
    selected = pycytominer.feature_select(
        normalized,
        features="infer",
        image_features=True,
        operation=["variance_threshold", "correlation_threshold", "drop_na_columns"],
    )
    kept = infer_cp_features(selected, image_features=True)
    assert 0 < len(kept) <= WIDTH and "Metadata_Compound" in selected

    # copairs: replicate wells of a compound (not DMSO) against the DMSO wells, as JUMP scores phenotypic activity
    selected = selected.assign(Metadata_Control=selected["Metadata_Compound"] == "DMSO")
    meta = selected[[c for c in selected if c.startswith("Metadata_")]].reset_index(drop=True)
    precision = copairs_map.average_precision(
        meta,
        selected[kept].to_numpy(),
        pos_sameby=["Metadata_Compound"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["Metadata_Control"],
        progress_bar=False,
    )
    precision = precision[~precision["Metadata_Control"]]
    scores = copairs_map.mean_average_precision(
        precision, ["Metadata_Compound"], null_size=1000, threshold=0.05, seed=0, progress_bar=False
    )
    assert set(scores["Metadata_Compound"]) == {"taxol", "cytochalasin B", "nocodazole"}
    assert (scores["mean_average_precision"] > 0.9).all() and scores["below_corrected_p"].all()
