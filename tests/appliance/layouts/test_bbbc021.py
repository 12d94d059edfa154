import csv
import re

import pytest

from appliance.layouts.base import CHANNELS
from appliance.layouts.bbbc021 import IMAGE_CSV, MOA_CSV, class_names, concentration_key, load_fields
from appliance.tables import MetadataError


def test_join_of_the_published_tables(shared_bbbc021):
    fields = load_fields(shared_bbbc021)
    assert len(fields) == 3848
    assert len(class_names(fields)) == 13 and "DMSO" in class_names(fields)
    assert len(load_fields(shared_bbbc021, labelled_only=False)) == 13200
    first = next(f for f in fields if f.compound == "taxol")
    assert first.moa == "Microtubule stabilizers"
    assert first.week.startswith("Week") and first.plate in str(first.paths[0])
    assert [re.search(r"_s\d_(w\d)", p.name).group(1) for p in first.paths] == ["w1", "w2", "w4"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_any_line_ending_quoting_and_bom(tmp_path, newline, shared_bbbc021):
    """Copies in the wild: CRLF or CR endings, all fields quoted or none, a BOM, '0.3' vs '0.300000'."""
    table = list(csv.reader(open(shared_bbbc021 / IMAGE_CSV, newline="")))
    rows = [table[0], *table[1::25]]
    moa = list(csv.reader(open(shared_bbbc021 / MOA_CSV, newline="")))
    with open(tmp_path / IMAGE_CSV, "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator=newline).writerows(rows)
    with open(tmp_path / MOA_CSV, "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator=newline)
        writer.writerow(moa[0])
        writer.writerows([c, f"{float(conc):g}", m] for c, conc, m in moa[1:])  # 0.300000 -> 0.3
    got = load_fields(tmp_path)
    want = [f for f in load_fields(shared_bbbc021) if f.paths[0].name in {r[2] for r in rows[1:]}]
    assert [(f.plate, f.well, f.site, f.moa) for f in got] == [(f.plate, f.well, f.site, f.moa) for f in want]
    assert len(got) > 100


def test_concentrations_compare_as_numbers():
    assert concentration_key("0.3") == concentration_key("0.300000") == concentration_key(3e-1)


def test_missing_column_names_the_file(tmp_path):
    (tmp_path / MOA_CSV).write_text("compound,moa\nDMSO,DMSO\n")
    with pytest.raises(MetadataError, match=f"{MOA_CSV}.*concentration"):
        load_fields(tmp_path)


def test_channel_order_is_the_models():
    assert CHANNELS == ("DAPI", "Tubulin", "Actin")
