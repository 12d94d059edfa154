"""Result files say which precision produced them."""

import csv

import numpy as np

from appliance.plate import PlateField
from appliance.results import write_results


def test_fields_and_wells_record_the_precision(tmp_path):
    fields = [PlateField("P1", "B02", "B", 2, site, (tmp_path / "a.tif",) * 3) for site in (1, 2)]
    files = write_results(tmp_path, fields, np.array([[0.9, 0.1], [0.4, 0.6]]), ("x", "y"), [], "int8")
    for name in ("fields", "wells"):
        with open(files[name], newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows and all(r["precision"] == "int8" for r in rows), name
