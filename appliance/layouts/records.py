"""From an imager's index to Fields: what the index-based layouts (harmony, cellvoyager, incell,
metaxpress HCS.ai, loaddata) share once they have parsed their files into ImageRecords.

One record is one plane of one channel of one field, as the imager lists it. assemble() picks
the time point and the plane (`--timepoint`, `--plane`) or keeps every plane for a maximum
projection (`--project max`), matches the imager's channels to the model's (match_channels),
and groups the records into Fields. What cannot make a field (a channel missing, a file listed
twice, a path outside the plate) is a Failure; what makes no sense for the whole plate (several
time points and no `--timepoint`, a channel map that fits nothing) is a PlateError.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from appliance.layouts.base import CHANNELS, Failure, Field, LayoutOptions, PlateError

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


def match_channels(channels: dict[str, str], mapping: dict[str, str]) -> dict[str, str]:
    """Model channel -> the imager's channel id. `channels` is id -> name, in the imager's order.

    --channels gives an id or a name (any case); channels it leaves out are found by name
    (NAME_HINTS); three channels with no recognisable names are taken in their order.
    """
    ids, listed = list(channels), ", ".join(f"{i} ({n})" if n else i for i, n in channels.items())
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
    if guesses and not any(guesses.values()) and not chosen and len(ids) == 3:
        return dict(zip(CHANNELS, ids))  # three channels, no recognisable names: the documented default order
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
    plate: str,
    layout: str,
    root: Path,
) -> tuple[list[Field], list[Failure]]:
    """Fields and Failures from every record of a plate; `names` is the imager's channel id -> name."""
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
            outside = [r.path for r in found if not r.path.resolve().is_relative_to(root)]
            if not found:
                problem = problem or f"missing channel {channel} ({ids[channel]}: {names[ids[channel]] or 'no name'})"
            elif outside:
                problem = problem or f"{outside[0]}: outside the plate folder {root}; refused"
            elif len({r.plane for r in found}) < len(found):
                problem = problem or f"more than one image for channel {channel} ({ids[channel]}) in one plane"
            stacks.append(tuple((r.path, r.frame) for r in found))
        if problem:
            failures.append(Failure(plate, well, site, "; ".join(Path(f).name for f in files[:3]), problem))
            continue
        first = tuple(stack[0] for stack in stacks)
        frames = tuple(frame for _, frame in first)
        fields.append(
            Field(
                plate,
                well,
                site,
                tuple(path for path, _ in first),
                planes=None if all(f is None for f in frames) else tuple(f or 0 for f in frames),
                stack=tuple(stacks) if options.project else None,
                layout=layout,
                source=source,
            )
        )
    return fields, failures
