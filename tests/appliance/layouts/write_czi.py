"""Write a plate as a Zeiss CZI multi-position file, with pylibCZIrw (ZEISS's own reader/writer library, the one
bioio-czi reads with): each field a scene, each channel a C plane, z-stacks as Z, time series as T.

The well of each scene is where ZEN puts it and where bioio-czi reads it:
`ImageDocument/Metadata/Information/Image/Dimensions/S/Scenes/Scene[@Index]/Shape[@Name]/RowIndex|ColumnIndex`
(counted from 0; scene Name and Shape Name the well's name). Source: bioio-devs/bioio-czi 3.0.1
`bioio_czi/standard_metadata.py` (`_row_or_column`: findall("Metadata/Information/Image/Dimensions/S/Scenes/Scene"),
`Shape/RowIndex`, `Shape/ColumnIndex`).
pylibCZIrw's `write_metadata` writes no S dimension, so the scenes are added to its XML with its metadata editor
(`edit_czi(...).edit_session().set_xml`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.appliance.layouts.same_fields import Images, as_stack

NAMES = ("HOECHST 33342", "Alexa 488", "Alexa 568")  # ZEN names channels by their dye


def write_plate(
    folder: Path, images: Images, names: tuple[str, ...] = NAMES, file_name: str = "plate.czi", no_well: int = 0
) -> Path:
    """One CZI holding every field as a scene, in (well, site) order; `no_well` more scenes whose well the file
    does not state. Arrays (height, width), (planes, ...) or (time points, planes, ...)."""
    from pylibCZIrw import czi as pyczi

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    keys = sorted(images)
    scenes = [images[key] for key in keys] + [images[keys[0]]] * no_well
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for scene, arrays in enumerate(scenes):
            for c, array in enumerate(arrays):
                stack = as_stack(array)
                for t in range(stack.shape[0]):
                    for z in range(stack.shape[1]):
                        plane = np.ascontiguousarray(stack[t, z])[..., None]
                        czi.write(plane, plane={"C": c, "T": t, "Z": z}, scene=scene, location=(scene * 10000, 0))
        czi.write_metadata(document_name=folder.name, channel_names=dict(enumerate(names)))
    described = []
    for scene, (well, _) in enumerate(keys):
        row, column = ord(well[0]) - ord("A"), int(well[1:]) - 1
        described.append(
            f'<Scene Index="{scene}" Name="{well}"><Shape Name="{well}">'
            f"<ColumnIndex>{column}</ColumnIndex><RowIndex>{row}</RowIndex></Shape></Scene>"
        )
    described += [f'<Scene Index="{len(keys) + i}" Name="P{i + 1}"/>' for i in range(no_well)]
    with pyczi.edit_czi(str(path)) as editor:
        xml = editor.read_metadata_xml()
        assert xml.count("</Channels>") == 1
        xml = xml.replace("</Channels>", "</Channels><S><Scenes>" + "".join(described) + "</Scenes></S>")
        with editor.edit_session() as builder:
            builder.set_xml(xml)
    return folder
