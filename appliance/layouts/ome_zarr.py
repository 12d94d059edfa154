"""OME-Zarr HCS plates: OME-NGFF 0.4 on Zarr v2 and 0.5 on Zarr v3, as ome-zarr-py, fractal,
bioformats2raw and the imagers' own converters write them.

`plate.zarr/` (the folder given to classify) carries the plate metadata ("plate": its rows,
columns and wells, each well a group at a path like `B/3`); a well group lists its images
("well": paths `0`, `1`, ...), one per field; an image group (`B/3/0`) is an OME-NGFF image,
"multiscales" naming its resolution levels (arrays) and their axes, "omero" its channels.
Zarr v2 keeps a group's attributes in `.zattrs` (beside `.zgroup`, `.zarray` for an array),
Zarr v3 in `zarr.json` under "attributes", where NGFF 0.5 nests them under "ome".

Read: the full-resolution array of each image (dataset 0 of its first multiscales), whose axes
may be any subset of t, c, z, y, x the metadata declares (by name, else by type; y and x last).
Channels: the indices of the c axis are the ids ("0", "1", ...), `omero.channels[].label` the
names, matched as every layout does (--channels DAPI=0 or DAPI="HOECHST 33342"; by default
names containing dapi/hoechst, tubulin, actin/phalloidin). Several z planes or time points need
--plane N / --timepoint N (numbered as the array indexes them, from 0) or --project max. The
well is the well path's row and column names (`B/3` -> B03), else its rowIndex/columnIndex;
the site is the image path's number + 1 (`0` -> site 1), else its place in the well's list.
A Field's path is the array's folder and its plane the flat index of (t, c, z) over the array's
leading axes; appliance.imageio reads it with zarr-python. Only the metadata is read here (JSON,
no zarr): an image, well or array missing or unreadable is a Failure naming it; a plate
metadata document that cannot be read is a PlateError naming the file.

Not supported: stores other than a local folder (zip, s3, http), lower resolution levels and
labels (never read), images whose channels differ from the plate's first image's (a Failure),
acquisitions (the images of every acquisition are sites of their well).
"""

from __future__ import annotations

from math import prod
from pathlib import Path

from appliance.layouts.base import Failure, Field, Layout, LayoutOptions, PlateError, parse_well, well_name
from appliance.layouts.records import ImageRecord, assemble, read_json, well_at

NAME = "ome-zarr"
LOOKS_FOR = 'OME-Zarr plate metadata (zarr.json or .zattrs with "plate")'
MAX_PLANES = 10_000  # (t, c, z) planes one field may declare; more is refused before any is listed
AXES = ("t", "c", "z", "y", "x")
KINDS = {"time": "t", "channel": "c"}  # an axis named otherwise is known by its type


class ZarrProblem(ValueError):
    """A group or array of the plate cannot be used; the message names it."""


def read_document(path: Path) -> dict:
    document = read_json(path, "Zarr metadata")
    if not isinstance(document, dict):
        raise ZarrProblem(f"{path}: expected a JSON object, found {type(document).__name__}")
    return document


def attributes(group: Path) -> tuple[Path, dict]:
    """(the file holding them, the NGFF attributes of a group): v3 zarr.json "attributes" (NGFF 0.5
    under "ome"), else v2 .zattrs; ZarrProblem if the folder is no Zarr group."""
    if (group / "zarr.json").is_file():
        document = read_document(group / "zarr.json")
        if document.get("node_type", "group") != "group":
            raise ZarrProblem(f"{group / 'zarr.json'}: a Zarr {document.get('node_type')}, not a group")
        attrs = document.get("attributes") or {}
        path = group / "zarr.json"
    elif (group / ".zattrs").is_file():
        attrs, path = read_document(group / ".zattrs"), group / ".zattrs"
    elif (group / ".zgroup").is_file():
        return group / ".zgroup", {}
    else:
        raise ZarrProblem(f"{group}: not on disk" if not group.exists() else f"{group}: no Zarr group (no zarr.json)")
    ome = attrs.get("ome") if isinstance(attrs, dict) else None
    return path, ome if isinstance(ome, dict) else attrs if isinstance(attrs, dict) else {}


def array_shape(array: Path) -> tuple[int, ...]:
    """The shape a Zarr array (v3 zarr.json or v2 .zarray) declares."""
    if (array / "zarr.json").is_file():
        path = array / "zarr.json"
    elif (array / ".zarray").is_file():
        path = array / ".zarray"
    else:
        raise ZarrProblem(f"{array}: no Zarr array there (no zarr.json or .zarray)")
    document = read_document(path)
    shape = document.get("shape")
    if document.get("node_type", "array") != "array" or not isinstance(shape, list):
        raise ZarrProblem(f"{path}: not the metadata of a Zarr array (no shape)")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ZarrProblem(f"{path}: shape {shape} is not a list of sizes")
    return tuple(shape)


def axis_roles(axes: list | None, ndim: int, where: Path) -> tuple[str, ...]:
    """t, c, z, y or x for each array axis; NGFF before 0.4 may leave them out (then t, c, z, y, x)."""
    if axes is None and ndim == len(AXES):
        return AXES
    if not isinstance(axes, list):
        raise ZarrProblem(f"{where}: multiscales without axes")
    roles = []
    for axis in axes:
        name, kind = (axis.get("name"), axis.get("type")) if isinstance(axis, dict) else (axis, None)
        role = name if name in AXES else KINDS.get(kind)
        if role is None:
            raise ZarrProblem(f"{where}: axis {name!r} (type {kind}): expected t, c, z, y and x")
        roles.append(role)
    if len(set(roles)) < len(roles) or roles[-2:] != ["y", "x"] or roles != sorted(roles, key=AXES.index):
        raise ZarrProblem(f"{where}: axes {''.join(roles)}: expected some of t, c, z then y, x, in that order")
    if len(roles) != ndim:
        raise ZarrProblem(f"{where}: {len(roles)} axes ({''.join(roles)}) for an array of {ndim} dimensions")
    return tuple(roles)


def image_records(image: Path, root: Path, well: str, site: int) -> tuple[list[ImageRecord], tuple[str, ...]]:
    """The records of every (t, c, z) plane of one image, and its channel labels."""
    where, attrs = attributes(image)
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise ZarrProblem(f"{where}: no multiscales (not an OME-NGFF image)")
    datasets = multiscales[0].get("datasets")
    dataset = datasets[0] if isinstance(datasets, list) and datasets and isinstance(datasets[0], dict) else {}
    if not isinstance(dataset.get("path"), str):
        raise ZarrProblem(f"{where}: multiscales without the path of dataset 0")
    array = image / dataset["path"]
    if not array.resolve().is_relative_to(root):
        raise ZarrProblem(f"{array}: outside the plate folder {root}; refused")
    shape = array_shape(array)
    roles = axis_roles(multiscales[0].get("axes"), len(shape), where)
    sizes = dict(zip(roles, shape))
    leading = [role for role in roles if role not in ("y", "x")]
    if prod(sizes[r] for r in leading) > MAX_PLANES:
        raise ZarrProblem(f"{array}: shape {shape} declares more than {MAX_PLANES} planes per field")
    omero = attrs.get("omero") if isinstance(attrs.get("omero"), dict) else {}
    channels = omero.get("channels") if isinstance(omero.get("channels"), list) else []
    labels = tuple(
        str(channels[c].get("label", "")) if c < len(channels) and isinstance(channels[c], dict) else ""
        for c in range(sizes.get("c", 1))
    )
    records = []
    for t in range(sizes.get("t", 1)):
        for c in range(sizes.get("c", 1)):
            for z in range(sizes.get("z", 1)):
                at, flat = {"t": t, "c": c, "z": z}, 0
                for role in leading:
                    flat = flat * sizes[role] + at[role]
                records.append(ImageRecord(well, site, str(c), array, plane=z, timepoint=t, frame=flat))
    return records, labels


def well_of(entry: dict, rows: list[str], columns: list[str], where: Path) -> str:
    """B03 from a plate's well entry: its path's row and column names, else rowIndex/columnIndex."""
    row, _, column = entry["path"].partition("/")
    try:
        return well_name(*parse_well(f"{row}{column}"))
    except ValueError:
        pass
    row_index = entry.get("rowIndex", rows.index(row) if row in rows else None)
    column_index = entry.get("columnIndex", columns.index(column) if column in columns else None)
    try:
        return well_at(int(row_index) + 1, int(column_index) + 1)
    except (TypeError, ValueError):
        raise PlateError(f"{where}: well {entry['path']!r}: no row letter and column number, nor indices") from None


def names_of(items) -> list[str]:
    return [str(item.get("name")) for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def plate_metadata(plate_dir: Path) -> tuple[Path, dict]:
    """(the file, the "plate" attributes); PlateError naming the file if they cannot be read."""
    try:
        where, attrs = attributes(plate_dir)
    except ZarrProblem as exc:
        raise PlateError(f"OME-Zarr plate: {exc}") from None
    plate = attrs.get("plate")
    if not isinstance(plate, dict):
        raise PlateError(f'{where}: no OME-NGFF plate metadata ("plate") in it')
    wells = plate.get("wells")
    if not isinstance(wells, list) or not all(isinstance(w, dict) and isinstance(w.get("path"), str) for w in wells):
        raise PlateError(f"{where}: the plate metadata has no list of wells with their paths")
    if not wells:
        raise PlateError(f"{where}: the plate metadata lists no wells")
    return where, plate


def discover(plate_dir: Path, options: LayoutOptions) -> tuple[list[Field], list[Failure]]:
    plate, root = plate_dir.name, plate_dir.resolve()
    where, metadata = plate_metadata(plate_dir)
    rows, columns = names_of(metadata.get("rows")), names_of(metadata.get("columns"))
    records, failures, first = [], [], None  # first: the channel labels of the plate's first image
    for entry in metadata["wells"]:
        well, well_dir = well_of(entry, rows, columns, where), plate_dir / entry["path"]
        try:
            if not well_dir.resolve().is_relative_to(root):
                raise ZarrProblem(f"{well_dir}: outside the plate folder {root}; refused")
            well_file, attrs = attributes(well_dir)
            images = (attrs.get("well") or {}).get("images") if isinstance(attrs.get("well"), dict) else None
            if not isinstance(images, list) or not all(isinstance(i, dict) and "path" in i for i in images):
                raise ZarrProblem(f"{well_file}: no OME-NGFF well metadata (a list of images with their paths)")
        except (ZarrProblem, PlateError) as exc:  # PlateError: unreadable JSON (of this well's group)
            failures.append(Failure(plate, well, 0, entry["path"], str(exc)))
            continue
        for place, image in enumerate(images):
            path = str(image["path"])
            site = int(path) + 1 if path.isdigit() else place + 1
            try:
                image_dir = well_dir / path
                if not image_dir.resolve().is_relative_to(root):
                    raise ZarrProblem(f"{image_dir}: outside the plate folder {root}; refused")
                found, labels = image_records(image_dir, root, well, site)
                first = labels if first is None else first
                if labels != first:
                    raise ZarrProblem(
                        f"{image_dir}: channels {list(labels)} differ from the plate's first image's {list(first)}"
                    )
            except (ZarrProblem, PlateError) as exc:
                failures.append(Failure(plate, well, site, f"{entry['path']}/{path}", str(exc)))
                continue
            records += found
    if not records:
        if failures:
            return [], failures
        raise PlateError(f"{where}: the plate's wells list no images")
    names = {str(c): label for c, label in enumerate(first)}
    fields, more = assemble(records, names, options, NAME, plate_dir, folders=True)
    return fields, failures + more


def is_plate(folder: Path) -> bool:
    """Plate metadata in the folder's own attributes: never a row, well or image group of a plate.
    A folder named *.zarr whose metadata cannot be read is taken too, for discover to say why."""
    try:
        return folder.is_dir() and isinstance(attributes(folder)[1].get("plate"), dict)
    except (ZarrProblem, PlateError):
        return folder.name.lower().endswith(".zarr") and folder.is_dir()


LAYOUT = Layout(NAME, LOOKS_FOR, is_plate, discover)
