"""From an imager's index to Fields: what the index-based layouts (harmony, cellvoyager, incell,
metaxpress HCS.ai, loaddata) share once they have parsed their files into ImageRecords.

One record is one plane of one channel of one field, as the imager lists it. assemble() picks
the time point and the plane (`--timepoint`, `--plane`) or keeps every plane for a maximum
projection (`--project max`), matches the imager's channels to the model's (match_channels),
and groups the records into Fields. What cannot make a field (a channel missing, a file listed
twice, a path outside the plate) is a Failure; what makes no sense for the whole plate (several
time points and no `--timepoint`, a channel map that fits nothing) is a PlateError.
well_at, whole_numbers, read_xml, read_json and stream_xml (a large index read as a stream) serve the layouts' parsers.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.layouts.base import CHANNELS, Failure, Field, LayoutOptions, PlateError, file_problem

# Default channel names: a name containing one of these is that model channel.
NAME_HINTS = {"DAPI": ("dapi", "hoechst"), "Tubulin": ("tubulin",), "Actin": ("actin", "phalloidin")}


class ChannelError(ValueError):
    """The imager's channels cannot be matched to the model's."""


@dataclass(frozen=True)
class ImageRecord:
    well: str  # "B02"
    site: int  # from 1
    channel: str  # the imager's channel id ("1", "2", ...)
    path: Path
    plane: int = 1
    timepoint: int = 1
    frame: int | None = None  # page in a multi-page file; None: the file holds this plane only


def well_at(row: int, column: int) -> str:
    """A well from 1-based row and column numbers, as imagers' indexes give them: (2, 3) -> 'B03', (27, 1) -> 'AA01'."""
    if not (1 <= row <= 26 * 27 and column >= 1):
        raise ValueError(f"no well at row {row}, column {column} (both count from 1)")
    letters = chr(ord("A") + (row - 1) % 26)
    if row > 26:
        letters = chr(ord("A") + (row - 1) // 26 - 1) + letters
    return f"{letters}{column:02d}"


def whole_numbers(values: dict[str, str], keys: tuple[str, ...], where: str) -> dict[str, int]:
    """values[key] as ints, for an index record's numbers; PlateError naming `where` if one is missing or not whole."""
    numbers = {}
    for key in keys:
        text = values.get(key, "")
        try:
            numbers[key] = int(text)
        except ValueError:
            problem = f"{key} {text!r} is not a whole number" if text else f"no {key}"
            raise PlateError(f"{where}: {problem}") from None
    return numbers


def local(name: str) -> str:
    """An XML tag or attribute name without its namespace: '{http://...}Image' -> 'Image'."""
    return name.rpartition("}")[2]


def read_xml(path: Path, what: str) -> ET.Element:
    """The root of a small XML file (any namespace, UTF-8 BOM or not); PlateError naming the file otherwise."""
    try:
        return ET.parse(path).getroot()
    except OSError as exc:
        raise PlateError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        raise PlateError(f"{path}: {what} is not readable XML ({exc})") from None


def read_json(path: Path, what: str) -> object:
    """A small JSON document (UTF-8, BOM or not); PlateError naming the file if it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise PlateError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PlateError(f"{path}: {what} is not readable JSON ({exc})") from None


def stream_xml(path: Path, root: str, depth: int, what: str) -> Iterator[tuple[tuple[str, ...], ET.Element]]:
    """Every element `depth` levels below the root of an XML index, as (tag names from the root down, element).

    Read as a stream: an element is dropped once the caller has seen it, so an index of a million
    images never sits in memory whole. Tags are without namespace. PlateError naming the file if it
    cannot be read, is not XML or its root is not `root`; junk after the root has closed is ignored
    (a CellVoyager .mlf is known to end in '>>').
    """
    stack: list[ET.Element] = []
    closed = False
    try:
        for event, element in ET.iterparse(path, events=("start", "end")):
            if event == "start":
                if not stack and local(element.tag) != root:
                    raise PlateError(f"{path}: not {what} (its root element is <{local(element.tag)}>, not <{root}>)")
                stack.append(element)
                continue
            stack.pop()
            closed = not stack
            if len(stack) == depth:
                yield (*(local(e.tag) for e in stack), local(element.tag)), element
                if len(stack[-1]) and stack[-1][0] is element:  # earlier siblings are gone: it is the first child
                    del stack[-1][0]
    except OSError as exc:
        raise PlateError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except ET.ParseError as exc:
        if not closed:
            raise PlateError(f"{path}: {what} is not readable XML ({exc})") from None


def match_channels(
    channels: dict[str, str], mapping: dict[str, str], defaults: dict[str, str] | None = None
) -> dict[str, str]:
    """Model channel -> the imager's channel id. `channels` is id -> name, in the imager's order.

    --channels gives an id or a name (any case); channels it leaves out are found by name
    (NAME_HINTS), else take the layout's `defaults` id (MetaXpress: w1, w2, w3) where it has
    one; three channels with no recognisable names and no defaults are taken in their order.
    """
    ids, listed = list(channels), ", ".join(f"{i} ({n})" if n and n != i else i for i, n in channels.items())
    chosen = {}
    for channel in CHANNELS:
        value = mapping.get(channel)
        if value is None:
            continue
        hits = [i for i in ids if i == value] or [i for i, n in channels.items() if n.strip().lower() == value.lower()]
        if len(hits) != 1:
            count = "no" if not hits else len(hits)
            raise ChannelError(f"{channel}={value!r}: {count} channel(s) of that id or name; the channels are {listed}")
        chosen[channel] = hits[0]
    guesses = {
        c: [i for i, n in channels.items() if any(h in n.lower() for h in NAME_HINTS[c])]
        for c in CHANNELS
        if c not in chosen
    }
    for channel, hits in guesses.items():
        if len(hits) > 1:
            raise ChannelError(
                f"channels {', '.join(f'{channels[i]!r} ({i})' for i in hits)} all look like {channel}; "
                f"pick one with --channels {channel}=NAME (or its id)"
            )
    if guesses and not any(guesses.values()) and not chosen and len(ids) == 3 and not defaults:
        return dict(zip(CHANNELS, ids))  # three channels, no recognisable names: the documented default order
    for channel, hits in guesses.items():
        if not hits and (defaults or {}).get(channel) in channels:
            hits.append(defaults[channel])
    unmatched = [c for c, hits in guesses.items() if not hits]
    if unmatched:
        raise ChannelError(
            f"no channel name matches {', '.join(unmatched)} (the channels are {listed}); "
            "name them with --channels, e.g. DAPI=1,Tubulin=2,Actin=3"
        )
    chosen.update({c: hits[0] for c, hits in guesses.items()})
    if len(set(chosen.values())) < len(chosen):
        raise ChannelError("one channel for two (" + ", ".join(f"{c}={chosen[c]}" for c in CHANNELS) + ")")
    return chosen


def choose(values: set[int], given: int | None, what: str, option: str, plate: str) -> int:
    """The one plane / time point to read: the one given, or the only one there is."""
    listed = ", ".join(map(str, sorted(values)))
    if given is not None:
        if given not in values:
            raise PlateError(f"{plate}: {option} {given}: the plate has {what}s {listed}")
        return given
    if len(values) > 1:
        raise PlateError(f"{plate}: {len(values)} {what}s ({listed}); choose one with {option} N")
    return next(iter(values))


def assemble(
    records: list[ImageRecord],
    names: dict[str, str],
    options: LayoutOptions,
    layout: str,
    root: Path,
    folders: bool = False,
) -> tuple[list[Field], list[Failure]]:
    """Fields and Failures from every record of a plate; `names` is the imager's channel id -> name.
    `root` is the plate folder: the Fields' plate is its name, and their files must lie inside it and be
    regular files (folders: the images are folders, as OME-Zarr arrays are)."""
    plate = root.name
    if not records:
        raise PlateError(f"{root}: the {layout} index lists no images")
    timepoint = choose({r.timepoint for r in records}, options.timepoint, "time point", "--timepoint", plate)
    records = [r for r in records if r.timepoint == timepoint]
    planes = {r.plane for r in records}
    if len(planes) > 1 and options.plane is None and not options.project:
        raise PlateError(
            f"{plate}: {len(planes)} planes ({', '.join(map(str, sorted(planes)))}); "
            "choose one with --plane N, or project them with --project max"
        )
    plane = None if options.project else choose(planes, options.plane, "plane", "--plane", plate)
    try:
        ids = match_channels(names, options.channels)
    except ChannelError as exc:
        raise PlateError(f"{root}: {exc}") from None
    source = ", ".join(
        part
        for part in (
            f"timepoint {timepoint}" if options.timepoint is not None else "",
            f"plane {plane}" if plane is not None and len(planes) > 1 else "",
            f"max projection of {len(planes)} planes" if options.project else "",
        )
        if part
    )
    by_field = defaultdict(lambda: defaultdict(list))
    for r in records:
        if plane is None or r.plane == plane:
            by_field[r.well, r.site][r.channel].append(r)
    fields, failures = [], []
    root = root.resolve()
    for (well, site), by_channel in by_field.items():
        stacks, problem, files = [], "", []
        for channel in CHANNELS:
            found = sorted(by_channel.get(ids[channel], []), key=lambda r: r.plane)
            files += [str(r.path) for r in found]
            unusable = [f"{r.path}: {why}" for r in found if (why := file_problem(r.path, root, True, folders))]
            if not found:
                problem = problem or f"missing channel {channel} ({ids[channel]}: {names[ids[channel]] or 'no name'})"
            elif unusable:
                problem = problem or unusable[0]
            elif len({r.plane for r in found}) < len(found):
                problem = problem or f"more than one image for channel {channel} ({ids[channel]}) in one plane"
            stacks.append(tuple((r.path, r.frame) for r in found))
        if problem:
            failures.append(
                Failure(plate, well, site, "; ".join(dict.fromkeys(Path(f).name for f in files[:3])), problem)
            )
            continue
        first = tuple(stack[0] for stack in stacks)
        stack = tuple(stacks) if options.project else None
        fields.append(field_of(plate, well, site, first, layout, stack=stack, source=source))
    return fields, failures


def field_of(
    plate: str, well: str, site: int, files: tuple[tuple[Path, int | None], ...], layout: str, **more
) -> Field:
    """A Field from the (file, page or None) of each model channel, in CHANNELS order."""
    frames = [frame for _, frame in files]
    planes = None if all(f is None for f in frames) else tuple(f or 0 for f in frames)
    return Field(plate, well, site, tuple(path for path, _ in files), planes=planes, layout=layout, **more)
