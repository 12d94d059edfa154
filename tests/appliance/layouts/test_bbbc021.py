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


def write_tables(folder, treatments: list[tuple[str, str]], moa_rows: list[tuple[str, str, str]]) -> None:
    """An image table with one field per (compound, concentration) and a MoA table of moa_rows."""
    from appliance.layouts.bbbc021 import IMAGE_COLUMNS

    with open(folder / IMAGE_CSV, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=IMAGE_COLUMNS)
        writer.writeheader()
        for number, (compound, concentration) in enumerate(treatments, start=1):
            row = {column: "" for column in IMAGE_COLUMNS}
            for channel, w in zip(CHANNELS, (1, 2, 4)):
                row[f"Image_FileName_{channel}"] = f"B{number:02d}_s1_w{w}X.tif"
                row[f"Image_PathName_{channel}"] = "Week1/Week1_22123"
            row.update(
                TableNumber="1",
                ImageNumber=str(number),
                Image_Metadata_Plate_DAPI="Week1_22123",
                Image_Metadata_Well_DAPI=f"B{number:02d}",
                Replicate="1",
                Image_Metadata_Compound=compound,
                Image_Metadata_Concentration=concentration,
            )
            writer.writerow(row)
    with open(folder / MOA_CSV, "w", newline="") as f:
        csv.writer(f).writerows([("compound", "concentration", "moa"), *moa_rows])


def test_fields_left_out_for_want_of_a_moa_are_counted_and_named(tmp_path, caplog):
    treatments = [("taxol", "0.3"), ("taxol", "0.3"), ("DMSO", "0"), ("cytochalasin B", "10"), ("mystery", "1")]
    moa = [
        ("taxol", "0.3", "Microtubule stabilizers"),
        ("DMSO", "0.0", "DMSO"),
        ("cytochalasn B", "10", "Actin disruptors"),
    ]
    write_tables(tmp_path, treatments, moa)
    with caplog.at_level("WARNING", logger="appliance.layouts.bbbc021"):
        fields = load_fields(tmp_path)
    assert [f.compound for f in fields] == ["taxol", "taxol", "DMSO"]
    left_out, unused = (record.getMessage() for record in caplog.records)
    assert f"{IMAGE_CSV}: 2 of 5 fields (2 treatments) have no mechanism of action in {MOA_CSV}" in left_out
    assert "cytochalasin B@10 (1 fields)" in left_out and "mystery@1 (1 fields)" in left_out
    # the misspelt row: the class "Actin disruptors" would vanish from training without a word
    assert (
        f"{MOA_CSV}: 1 treatment(s) match no field of {IMAGE_CSV} (misspelt?): "
        "cytochalasn B@10 (line 4, Actin disruptors)" in unused
    )


def test_a_plate_with_part_of_the_moa_table_is_not_warned_about(tmp_path, caplog):
    # one week of BBBC021, or a held-out plate: every field labelled, most of the table elsewhere
    moa = [("taxol", "0.3", "Microtubule stabilizers"), ("DMSO", "0", "DMSO"), ("AZ138", "1", "Eg5 inhibitors")]
    write_tables(tmp_path, [("taxol", "0.3"), ("DMSO", "0")], moa)
    with caplog.at_level("INFO", logger="appliance.layouts.bbbc021"):
        assert len(load_fields(tmp_path)) == 2
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", f"{tmp_path / MOA_CSV}: 1 of its 3 treatments are not on these plates")
    ]


def test_a_treatment_listed_twice_with_two_moas_is_refused_naming_the_lines(tmp_path):
    moa = [
        ("taxol", "0.3", "Microtubule stabilizers"),
        ("DMSO", "0", "DMSO"),
        ("taxol", "0.300000", "Actin disruptors"),
    ]
    write_tables(tmp_path, [("taxol", "0.3")], moa)
    with pytest.raises(
        MetadataError,
        match=r"taxol at 0.300000 is 'Microtubule stabilizers' on line 2 and 'Actin disruptors' on line 4",
    ):
        load_fields(tmp_path)
    write_tables(tmp_path, [("taxol", "0.3")], [*moa[:2], ("taxol", "0.30", "Microtubule stabilizers")])
    assert [f.moa for f in load_fields(tmp_path)] == ["Microtubule stabilizers"]  # the same twice: fine


def test_a_metadata_table_that_is_a_fifo_is_refused_unopened(tmp_path):
    import os

    write_tables(tmp_path, [("taxol", "0.3")], [("taxol", "0.3", "Microtubule stabilizers")])
    (tmp_path / MOA_CSV).unlink()
    os.mkfifo(tmp_path / MOA_CSV)  # nothing writes to it: opening it to read would wait for ever
    with pytest.raises(MetadataError, match=f"{MOA_CSV}: not a regular file but a FIFO; refused"):
        load_fields(tmp_path)
