"""MetaXpress exports with their .HTD (write_metaxpress): wavelengths named by the HTD's WaveName lines.

The layout's other behaviour (file names, TimePoint_1, defaults w1 w2 w3, refused time series)
is tested in tests/appliance/test_plate.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from appliance.layouts.base import PlateError
from appliance.plate import detect_layout, discover_fields
from tests.appliance.layouts.same_fields import classified_as_bbbc021, pixels, random_images
from tests.appliance.layouts.write_metaxpress import write_plate


def wavelengths(field) -> list[str]:
    return [p.stem.rsplit("_", 1)[1] for p in field.paths]


def test_an_export_with_its_htd_fields_and_pixels(tmp_path):
    images = random_images()
    plate = write_plate(tmp_path / "9987_Plate_3434", images)
    assert detect_layout(plate) == "metaxpress"
    fields, failures = discover_fields(plate)
    assert failures == []
    assert [(f.plate, f.well, f.site, f.layout) for f in fields] == [
        ("9987_Plate_3434", well, site, "metaxpress") for well, site in sorted(images)
    ]
    # DAPI by its name; FITC and Texas Red say nothing, so the defaults w2 and w3
    assert [p.name for p in fields[1].paths] == ["9987_B02_s2_w1.TIF", "9987_B02_s2_w2.TIF", "9987_B02_s2_w3.TIF"]
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))


def test_channels_by_htd_name_or_number(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(tmp_path / "P", images, names=("DAPI", "FITC", "Cy5"), extra=("Texas Red",), order=(1, 2, 4))
    (field,), _ = discover_fields(plate, channels="DAPI=dapi,Tubulin=FITC,Actin=Cy5")
    assert wavelengths(field) == ["w1", "w2", "w4"]
    assert discover_fields(plate, channels="Tubulin=w2,Actin=Cy5") == discover_fields(plate, channels="Actin=4")
    assert np.array_equal(pixels(field), np.stack(images["B02", 1]))
    (field,), _ = discover_fields(plate)  # no name says Actin: w3, the default
    assert wavelengths(field) == ["w1", "w2", "w3"]
    with pytest.raises(
        PlateError, match=r"9987\.HTD: Actin='GFP': no channel.*1 \(DAPI\), 2 \(FITC\), 3 \(Texas Red\)"
    ):
        discover_fields(plate, channels="Actin=GFP")
    with pytest.raises(PlateError, match=r"one channel for two \(DAPI=1, Tubulin=1, Actin=3\)"):
        discover_fields(plate, channels="Tubulin=DAPI")


def test_telling_names_beat_the_default_numbers(tmp_path):
    images = random_images(wells=("C05",), sites=(1, 2))
    names = ("Hoechst 33342", "Tubulin Alexa 488", "Phalloidin 647")
    plate = write_plate(tmp_path / "P", images, names=names, extra=("Cy3",), order=(2, 3, 4))
    fields, failures = discover_fields(plate)
    assert failures == [] and [wavelengths(f) for f in fields] == [["w2", "w3", "w4"]] * 2
    for field in fields:
        assert np.array_equal(pixels(field), np.stack(images[field.well, field.site]))
    names = ("Hoechst 33342", "DAPI", "Phalloidin 647")
    plate = write_plate(tmp_path / "Q", images, names=names)
    with pytest.raises(PlateError, match=r"'Hoechst 33342' \(1\), 'DAPI' \(2\) all look like DAPI"):
        discover_fields(plate)


def test_a_time_point_folder_given_is_its_plate_with_the_plate_htd(tmp_path):
    images = random_images(wells=("B02",), sites=(1,))
    plate = write_plate(
        tmp_path / "Plate_7", images, names=("DAPI", "FITC", "Cy5"), extra=("Texas Red",), order=(1, 2, 4)
    )
    (plate / "TimePoint_1" / "9987.HTD").unlink()
    assert detect_layout(plate / "TimePoint_1") == "metaxpress"
    (field,), _ = discover_fields(plate / "TimePoint_1", channels="Actin=Cy5")
    assert field.plate == "Plate_7" and wavelengths(field) == ["w1", "w2", "w4"]


@pytest.mark.parametrize(
    "text, message",
    [
        (b'"Description", "no header"\r\n"EndFile"\r\n', r'not a MetaXpress \.HTD file \(no "HTSInfoFile" line\)'),
        (b'"HTSInfoFile", Version 1.0\r\n"NWavelengths", three\r\n', "NWavelengths 'three' is not a whole number"),
    ],
)
def test_a_bad_htd_is_a_plate_error_naming_it(tmp_path, text, message):
    plate = write_plate(tmp_path / "P", random_images(sites=(1,)))
    (plate / "9987.HTD").write_bytes(text)
    with pytest.raises(PlateError, match=f"{plate / '9987.HTD'}: {message}"):
        discover_fields(plate)
    (plate / "other.HTD").write_bytes(text)
    with pytest.raises(PlateError, match=r"2 \.HTD files \(9987\.HTD, other\.HTD\); one plate per folder"):
        discover_fields(plate)


def test_classify_gives_the_predictions_of_the_same_fields_as_bbbc021(tmp_path, tiny_model):
    images = random_images(wells=("B02", "B03"), sites=(1, 2), seed=4)
    plate = write_plate(tmp_path / "9987_Plate_1", images, names=("DAPI", "GFP", "RFP"))
    (plate / "TimePoint_1" / "9987_B03_s2_w2.TIF").unlink()
    failures = classified_as_bbbc021(plate, images, tiny_model, tmp_path, channels="Tubulin=GFP,Actin=RFP")
    assert [(f["Metadata_Well"], f["Metadata_Site"], f["Reason"]) for f in failures] == [
        ("B03", "2", "missing channel Tubulin (w2)")
    ]
