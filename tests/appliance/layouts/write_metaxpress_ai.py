"""ImageXpress HCS.ai acquisitions as MetaXpress Acquire (2025) writes them, for tests.

Copied in shape from the real acquisition in fractal-analytics-platform/fractal-uzh-converters@430618:
tests/data/MolecularDevices-ImageXpressHCSai/raw/hcs_1w1s1t1c1z_binning4x4/ (test_data.mxprotocol,
experiment/1w1s1t1c1z_binning4x4.jdce, experiment/image_metadata_1.csv,
experiment/timepoint0/test_data_t0_C05_s0_w0_z0.tif and its .tif.statistics.json), and the folder
layout of docs/converters/md_imagexpress.md (@62fbf7e):

    {protocol}_{date-time}/
    ├── {protocol}.mxprotocol                 (JSON; trimmed here to its names)
    ├── autofocus/focus_report.txt
    ├── experiment/                           (the images; with a z-stack, their maximum projections)
    │   ├── {acquisition}.jdce                (JSON: ImageStack.AutoLeadAcquisitionProtocol.Wavelengths ...)
    │   ├── image_metadata_1.csv              (a row per image; Row, Column from 1; Field, Wavelength,
    │   │                                      Timepoint, ZIndex from 0; Well "C - 5")
    │   └── timepoint{t}/{protocol}_t{t}_{well}_s{field}_w{wave}_z{z}.tif   (+ .tif.statistics.json)
    └── experiment_z_stack/                   (with a z-stack: every plane, the same files)

Values not read by the appliance (positions, times, checksums) are made up; the statistics files
carry min and max but no histogram.
"""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import numpy as np
import tifffile

from appliance.layouts.base import parse_well
from tests.appliance.layouts.same_fields import Images, as_stack
from tests.appliance.layouts.write_incell import row_number

NAMES = ("DAPI", "FITC", "TRITC")  # EmissionFilter names, as MetaXpress Acquire labels its channels
WAVELENGTHS = {"DAPI": 440, "FITC": 525, "TRITC": 595, "Cy5": 690}
COLUMNS = (
    "FovUuid,Well,Row,Column,Field,Wavelength,Timepoint,ZIndex,ImageStartXPx,ImageStartYPx,ImageSizeXPx,"
    "ImageSizeYPx,ImageSubFolderPath,ImageFileName,TimeStampSec,ExposureTimeMs,ExcitationEmissionFilter,"
    "MinIntensity,MaxIntensity,MeanIntensity,PositionXUm,PositionYUm,PositionZUm,FieldOffsetPointX,"
    "FieldOffsetPointY,TemperatureC,CO2,Annotations,Checksum,O2Level"
).split(",")


def jdce(acquisition: str, protocol: str, names: list[str], size: tuple[int, int], planes: int, times: int) -> dict:
    return {
        "Version": "1.1",
        "ImageStack": {
            "PlateId": f"{acquisition} 2026-03-02, 13:57:52",
            "Uuid": "a7b149ec-a653-4074-ad7a-cf4302e7dcfd",
            "Application": {"Name": "MetaXpress Acquire", "SoftwareLabel": "2025.2.0.5237"},
            "Creation": {"Date": "2026-03-02", "Time": "13:57:52", "TimeZoneOffset": "0"},
            "ImageFormat": "TIFF",
            "LargeImage": False,
            "AutoLeadAcquisitionProtocol": {
                "Camera": {"Size": {"Width": size[1], "Height": size[0]}, "Binning": "4 X 4"},
                "ObjectiveCalibration": {
                    "Unit": "µm",
                    "ObjectiveName": "20X Plan Apo Lambda D",
                    "PixelWidth": 1.294,
                    "PixelHeight": 1.294,
                },
                "Plate": {
                    "Name": "Ibidi µ-Plate 96 Well Square 89626",
                    "Rows": 8,
                    "Columns": 12,
                    "TopLeftWellCenterOffset": {"Unit": "µm", "Horizontal": 14.4, "Vertical": 11.3},
                    "WellParameters": {"Shape": "square", "Width": 7.4, "Height": 7.4, "Size": 54.76, "Unit": "µm"},
                    "WellSpacing": {"Unit": "µm", "Horizontal": 9.0, "Vertical": 9.0},
                },
                "Wavelengths": [
                    {
                        "Index": index,
                        "ImagingMode": "3-D" if planes > 1 else "2-D",
                        "ZSlice": planes,
                        "ZStep": 1.5 if planes > 1 else 0.0,
                        "EmissionFilter": {"Name": name, "Wavelength": WAVELENGTHS.get(name, 500), "Unit": "nm"},
                        "ExcitationFilter": {"Name": name, "Wavelength": WAVELENGTHS.get(name, 500), "Unit": "nm"},
                    }
                    for index, name in enumerate(names)
                ],
                "PlateMap": {
                    "ZDimensionParameters": {
                        "Enabled": planes > 1,
                        "Step": 1.5 if planes > 1 else 0.0,
                        "NumberOfSlices": planes,
                        "Variable": False,
                    },
                    "TimeSchedule": {
                        "Enabled": times > 1,
                        "NumberOfTimepoints": times,
                        "Times": [{"Ms": t * 60000} for t in range(times)],
                        "Variable": False,
                    },
                },
                "ProjectInformation": {"Project": {"Name": protocol}, "User": {"Name": "f.sturzenegger"}},
                "CollectionComplete": True,
            },
            "Operator": {"Login": "f.sturzenegger"},
            "SpecimenHolder": {
                "Type": "plate",
                "Label": "Ibidi µ-Plate 96 Well Square 89626",
                "Barcode": "",
                "Description": f"ProtocolName: {protocol}",
            },
            "ImageMetadataFiles": ["image_metadata_1.csv"],
        },
    }


def write_experiment(folder: Path, stacks: dict, names: list[str], protocol: str, acquisition: str) -> None:
    """One experiment folder: the .jdce, image_metadata_1.csv and the images of stacks[(well, site)][channel]
    ((time points, planes, height, width) each)."""
    times, planes, *size = next(iter(stacks.values()))[0].shape
    folder.mkdir(parents=True)
    rows = []
    for (well, site), channel_stacks in sorted(stacks.items()):
        row, column = parse_well(well)
        for t in range(times):
            (folder / f"timepoint{t}").mkdir(exist_ok=True)
            for wave, stack in enumerate(channel_stacks):
                for z in range(planes):
                    image = stack[t, z]
                    name = f"{protocol}_t{t}_{row}{column:02d}_s{site - 1}_w{wave}_z{z}.tif"
                    tifffile.imwrite(folder / f"timepoint{t}" / name, image)
                    statistics = {
                        "channels": 1,
                        "bitsPerSample": 16,
                        "min": [int(image.min())],
                        "max": [int(image.max())],
                    }
                    (folder / f"timepoint{t}" / f"{name}.statistics.json").write_text(json.dumps(statistics))
                    values = [
                        str(uuid.uuid4()),
                        f"{row} - {column}",
                        row_number(row),
                        column,
                        site - 1,
                        wave,
                        t,
                        z,
                        0,
                        0,
                        size[1],
                        size[0],
                        f"timepoint{t}",
                        name,
                        1772456272.45 + t * 60,
                        10,
                        names[wave],
                        int(image.min()),
                        int(image.max()),
                        float(image.mean()),
                        50027.34,
                        30045.34,
                        18444.72 + z * 1.5,
                        -372.67,
                        745.34,
                        23.0,
                        0.0,
                        "",
                        "",
                        20.0,
                    ]
                    rows.append(dict(zip(COLUMNS, values)))
    with open(folder / "image_metadata_1.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    document = jdce(acquisition, protocol, names, tuple(size), planes, times)
    (folder / f"{acquisition}.jdce").write_text(json.dumps(document, indent=4, ensure_ascii=False), encoding="utf-8")


def write_plate(
    folder: Path,
    images: Images,
    *,
    protocol: str = "test_data",
    acquisition: str = "3w2s1t3c1z_binning4x4",
    names=NAMES,
    extra=(),
) -> Path:
    """Write the fields as an ImageXpress HCS.ai acquisition; returns the acquisition folder.

    images: (well, site) -> DAPI, Tubulin, Actin arrays of (height, width), (planes, height, width) or
    (time points, planes, height, width). names: those three channels' EmissionFilter names; extra:
    names of more channels, written as zeros. With several planes, experiment_z_stack/ holds them and
    experiment/ their maximum projections, as the instrument writes them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{protocol}.mxprotocol").write_text(
        json.dumps({"uiModel": {"acquisitionName": acquisition, "protocolName": protocol}}, indent=4)
    )
    (folder / "autofocus").mkdir(exist_ok=True)
    (folder / "autofocus" / "focus_report.txt").write_text("Autofocus report\n")
    names = list(names) + list(extra)
    stacks = {
        key: [as_stack(a) for a in arrays] + [np.zeros_like(as_stack(arrays[0]))] * len(extra)
        for key, arrays in images.items()
    }
    planes = next(iter(stacks.values()))[0].shape[1]
    if planes > 1:
        write_experiment(folder / "experiment_z_stack", stacks, names, protocol, acquisition)
        stacks = {key: [s.max(axis=1, keepdims=True) for s in channel_stacks] for key, channel_stacks in stacks.items()}
    write_experiment(folder / "experiment", stacks, names, protocol, acquisition)
    return folder
