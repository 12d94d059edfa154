"""The plate map: one picture of a plate, every well coloured by the class the model gave it.

A well's colour is its class, its shade the class's mean probability (pale: unsure), and the
class's number is written in the well, so the map reads without telling colours apart. Wells
never imaged (no field at all) are white with a dotted outline; wells where fields failed get a
thick dark ring, and when nothing in the well could be classified a grey fill and a cross. The
grid is the smallest standard plate (appliance.wells: 6, 12, 24, 48, 96, 384 or 1536 wells)
holding every well given. matplotlib only, Agg backend: no display needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window, also on a desktop

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Circle, Patch  # noqa: E402

from appliance.files import write_atomically
from appliance.wells import PLATE_FORMATS, PlateFormat, plate_format

# Colour-blind-friendly categorical colours: Okabe & Ito (2008) without black, then members of
# Paul Tol's "muted" and "light" sets (2021) that stay apart from those and from one another.
# 13 colours for the 13 classes of BBBC021, 4 more after them; past 17 they repeat, which the
# class numbers written in the wells disambiguate.
PALETTE = (
    "#E69F00",
    "#56B4E9",
    "#009E73",
    "#F0E442",
    "#0072B2",
    "#D55E00",
    "#CC79A7",
    "#332288",
    "#117733",
    "#882255",
    "#999933",
    "#CC6677",
    "#FFAABB",
    "#44AA99",
    "#88CCEE",
    "#DDCC77",
    "#AA4499",
)
EMPTY = "#E4E4E4"  # a well imaged but without a result: every field in it failed
EMPTY_EDGE = "#9A9A9A"
NOT_IMAGED_EDGE = "#C8C8C8"  # a well with no field at all: white, dotted outline
FAILED_EDGE = "#1A1A1A"  # ring of a well where fields failed
MIN_SHADE = 0.3  # the least class colour a well gets (at chance-level confidence)

WELL = re.compile(r"^(?P<row>[A-Za-z]{1,2})(?P<column>\d{1,3})$")

PlateLayout = PlateFormat  # the name the report knows the drawn plate by
PLATE_96, PLATE_384 = (next(p for p in PLATE_FORMATS if p.wells == n) for n in (96, 384))
# wells -> (inches, dpi): 1500x768 px up to 96 wells, 2325x1260 for 384, 3300x1950 for 1536
FIGURE = {p.wells: ((12.5, 6.4), 120) for p in PLATE_FORMATS if p.wells <= 96}
FIGURE.update({384: ((15.5, 8.4), 150), 1536: ((22.0, 13.0), 150)})
FONT = {384: 5.5, 1536: 3.0}  # the class number in a well, smaller on denser plates (else 9 pt)


def class_colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def well_position(well: dict) -> tuple[str, int]:
    """(row letter, column) of a wells.csv-like row: Metadata_Row/Metadata_Column, else from Metadata_Well."""
    row, column = str(well.get("Metadata_Row") or "").strip().upper(), str(well.get("Metadata_Column") or "").strip()
    if not (row and column):
        match = WELL.match(str(well.get("Metadata_Well") or "").strip())
        if not match:
            raise ValueError(f"well {well.get('Metadata_Well')!r}: no row and column (expected a name like B02)")
        row, column = match["row"].upper(), match["column"]
    try:
        return row, int(float(column))
    except ValueError:
        raise ValueError(f"well {well.get('Metadata_Well')!r}: column {column!r} is not a number") from None


def plate_layout(positions, plate_wells: int | None = None) -> PlateLayout:
    """The plate of plate_wells wells (6 to 1536), else the smallest of 96, 384, 1536 holding every
    (row letters, column) given (appliance.wells.plate_format)."""
    return plate_format(positions, plate_wells)


def on_plate(well: str) -> bool:
    """Whether a well name (B02, AF48) is a well of a 1536-well plate (so of any plate drawn here)."""
    try:
        plate_layout([well_position({"Metadata_Well": well})])
        return True
    except ValueError:
        return False


def map_layout(wells: list[dict], failed=(), plate_wells: int | None = None) -> PlateLayout:
    """The plate a map of these wells (those with a class) and these failed well names is drawn on."""
    return plate_layout(
        [well_position(w) for w in wells if str(w.get("Classify_Class") or "").strip()]
        + [well_position({"Metadata_Well": name}) for name in failed],
        plate_wells,
    )


def shade(colour: str, confidence: float, classes: int) -> tuple[float, float, float]:
    """The class colour mixed with white: full at confidence 1, MIN_SHADE at chance (1 / classes)."""
    chance = 1.0 / max(classes, 2)
    strength = min(max((confidence - chance) / (1.0 - chance), 0.0), 1.0)
    amount = MIN_SHADE + (1.0 - MIN_SHADE) * strength
    return tuple(1.0 - amount * (1.0 - c) for c in to_rgb(colour))


def text_colour(rgb) -> str:
    luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]
    return "black" if luminance > 0.45 else "white"


def draw_plate_map(
    wells: list[dict],
    labels: list[str],
    path: Path,
    failed: dict[str, int] | None = None,
    title: str = "",
    plate_wells: int | None = None,
) -> Path:
    """Draw wells (rows of wells.csv: position, Classify_Class, Classify_Confidence) to a PNG at path.

    labels: the model's classes in order (number i + 1, colour class_colour(i)); a class not among
    them is added at the end. failed: well name -> number of fields that failed in it; such wells
    are ringed, also when they have no result at all. plate_wells: the plate's size when known (6 to
    1536; else found from the wells, see plate_layout). Returns path.
    """
    failed = {name.strip().upper(): n for name, n in (failed or {}).items() if n}
    labels = list(labels)
    results: dict[tuple[str, int], tuple[str, float]] = {}
    for well in wells:
        name = str(well.get("Classify_Class") or "").strip()
        if not name:
            continue
        if name not in labels:
            labels.append(name)
        results[well_position(well)] = (name, float(well.get("Classify_Confidence") or 0.0))
    failed_at = {well_position({"Metadata_Well": name}): n for name, n in failed.items()}
    layout = map_layout(wells, failed, plate_wells)

    big = layout.wells >= 384
    inches, dpi = FIGURE[layout.wells]
    fig, ax = plt.subplots(figsize=inches, dpi=dpi)
    font = FONT.get(layout.wells, 9)
    for r, row in enumerate(layout.row_names):
        for c in range(1, layout.columns + 1):
            x, y = c - 1, r
            result, n_failed = results.get((row, c)), failed_at.get((row, c), 0)
            radius = 0.37 if n_failed else 0.42  # room for the ring, apart from the fill
            if result:
                index = labels.index(result[0])
                fill = shade(class_colour(index), result[1], len(labels))
                ax.add_patch(Circle((x, y), radius, facecolor=fill, edgecolor="white", linewidth=0.6))
                ax.text(x, y, str(index + 1), ha="center", va="center", fontsize=font, color=text_colour(fill))
            elif n_failed:
                ax.add_patch(Circle((x, y), radius, facecolor=EMPTY, edgecolor=EMPTY_EDGE, linewidth=0.8))
                ax.text(x, y, "\u00d7", ha="center", va="center", fontsize=font * 1.4, color=FAILED_EDGE)
            else:  # never imaged: nothing was there to classify, nothing went wrong
                ax.add_patch(
                    Circle((x, y), radius, facecolor="white", edgecolor=NOT_IMAGED_EDGE, linewidth=0.8, linestyle=":")
                )
            if n_failed:
                ax.add_patch(
                    Circle((x, y), 0.455, facecolor="none", edgecolor=FAILED_EDGE, linewidth=1.6 if big else 2.4)
                )

    ax.set_xlim(-0.6, layout.columns - 0.4)
    ax.set_ylim(layout.rows - 0.4, -0.6)  # row A on top, as the plate lies
    ax.set_aspect("equal")
    ax.set_xticks(range(layout.columns), [str(c) for c in range(1, layout.columns + 1)], fontsize=max(font + 1, 6))
    ax.set_yticks(range(layout.rows), list(layout.row_names), fontsize=max(font + 1, 6))
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(
        f"{title}  ({layout.wells}-well plate)" if title else f"{layout.wells}-well plate",
        fontsize=12,
        pad=24 if big else 20,
    )

    handles = [
        Patch(facecolor=class_colour(i), edgecolor="none", label=f"{i + 1}  {label}") for i, label in enumerate(labels)
    ]
    handles += [
        Patch(facecolor="white", edgecolor=NOT_IMAGED_EDGE, linestyle=":", label="not imaged (no fields)"),
        Line2D(
            [],
            [],
            marker="o",
            markersize=11,
            markerfacecolor="white",
            markeredgecolor=FAILED_EDGE,
            markeredgewidth=2.2,
            linestyle="none",
            label="fields failed (\u00d7: all)",
        ),
    ]
    handles += [
        Patch(facecolor=shade("#808080", conf, len(labels)), edgecolor="none", label=f"confidence {conf:.0%}")
        for conf in (1.0, 0.75, 0.5)
    ]
    handles.append(
        Patch(
            facecolor=shade("#808080", 0.0, len(labels)),
            edgecolor="none",
            label=f"confidence {1 / max(len(labels), 2):.0%} (chance)",
        )
    )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        fontsize=8 if big else 9,
        title="class (number in the well)",
        title_fontsize=9 if big else 10,
        alignment="left",
    )
    fig.tight_layout()
    try:  # a reader never sees half a picture
        return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
