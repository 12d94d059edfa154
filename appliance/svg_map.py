"""The report's plate map as inline SVG: the same wells, colours and rings as plate_map.png, and
on hover (an SVG <title> per well) the well's class, confidence, fields, failures and QC flags.

plate_map.png (appliance/platemap.py) is the picture for slides and mail; this is the one a
browser can point at. Both take the plate, the class colours and shades from platemap.py. A
well holding fields far from the training set (Classify_Distance beyond the model's threshold)
gets a red corner mark.
"""

from __future__ import annotations

from html import escape

from appliance.platemap import (
    EMPTY,
    EMPTY_EDGE,
    FAILED_EDGE,
    NOT_IMAGED_EDGE,
    class_colour,
    map_layout,
    shade,
    text_colour,
    well_position,
)

FLAG = "#C0392B"  # the QC mark: fields far from anything the model was trained on
MAX_WIDTH = 960  # pixels the grid may take
LABEL = 22  # room for the row letters and column numbers


def hex_colour(rgb) -> str:
    return "#" + "".join(f"{round(c * 255):02X}" for c in rgb)


def well_title(name: str, well: dict | None, label: str, failed: int, far: int, threshold: float | None) -> str:
    lines = [name]
    if well:
        lines.append(f"class {label}, confidence {float(well.get('Classify_Confidence') or 0):.2f}")
        lines.append(f"{well.get('Count_Fields', '?')} field(s) classified")
        if well.get("Metadata_Compound"):
            concentration = well.get("Metadata_Concentration")
            at = f" at {concentration:g}" if isinstance(concentration, (int, float)) else ""
            lines.append(f"{well['Metadata_Compound']}{at}")
    else:
        lines.append("no result" if failed else "not imaged (no fields)")
    if failed:
        lines.append(f"{failed} field(s) failed")
    if far:
        lines.append(f"QC: {far} field(s) far from the training set (distance > {threshold:.3g})")
    return "\n".join(lines)


def plate_svg(
    wells: list[dict],
    labels: list[str],
    failed: dict[str, int],
    far: dict[str, int],
    threshold: float | None,
    plate_wells: int | None = None,
) -> str:
    """The map as an <svg> element. failed / far: well name -> fields failed / flagged there.

    Raises ValueError (from platemap.map_layout) when the wells fit no plate drawn here."""
    layout = map_layout(wells, failed, plate_wells)
    labels = list(labels) + sorted({str(w.get("Classify_Class") or "") for w in wells} - set(labels) - {""})
    by_position = {well_position(w): w for w in wells if str(w.get("Classify_Class") or "").strip()}
    pitch = min(36.0, MAX_WIDTH / layout.columns)
    radius, font = pitch * 0.42, max(pitch * 0.36, 5.0)
    width, height = LABEL + pitch * layout.columns + 4, LABEL + pitch * layout.rows + 4
    parts = [
        f'<svg class="platemap" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif">'
    ]
    every = 1 if pitch >= 16 else 2  # keep labels legible on dense plates
    for c in range(1, layout.columns + 1, every):
        x = LABEL + pitch * (c - 0.5)
        parts.append(f'<text x="{x:.1f}" y="{LABEL - 7}" text-anchor="middle" font-size="{font:.1f}">{c}</text>')
    for r, row in enumerate(layout.row_names):
        y = LABEL + pitch * (r + 0.5)
        parts.append(
            f'<text x="{LABEL - 5}" y="{y + font * 0.35:.1f}" text-anchor="end" font-size="{font:.1f}">{row}</text>'
        )
        for c in range(1, layout.columns + 1):
            name, x = f"{row}{c:02d}", LABEL + pitch * (c - 0.5)
            well = by_position.get((row, c))
            n_failed, n_far = failed.get(name, 0), far.get(name, 0)
            label = str(well["Classify_Class"]) if well else ""
            title = well_title(name, well, label, n_failed, n_far, threshold)
            parts.append(f'<g class="well" data-well="{name}"><title>{escape(title)}</title>')
            if well:
                index = labels.index(label)
                fill = shade(class_colour(index), float(well.get("Classify_Confidence") or 0), len(labels))
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{hex_colour(fill)}"/>')
                if pitch >= 16:
                    parts.append(
                        f'<text x="{x:.1f}" y="{y + font * 0.35:.1f}" text-anchor="middle" font-size="{font:.1f}" '
                        f'fill="{text_colour(fill)}">{index + 1}</text>'
                    )
            elif n_failed:  # imaged, nothing classified
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="{EMPTY}" stroke="{EMPTY_EDGE}"/>'
                )
            else:  # never imaged: white, dotted outline
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" fill="white" stroke="{NOT_IMAGED_EDGE}" '
                    'stroke-dasharray="2,2"/>'
                )
            if n_failed:
                parts.append(
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{pitch * 0.46:.1f}" fill="none" stroke="{FAILED_EDGE}" '
                    f'stroke-width="{max(pitch * 0.07, 1):.1f}"/>'
                )
            if n_far:  # a triangle in the well's upper right corner
                x0, y0, s = x + pitch * 0.5, y - pitch * 0.5, pitch * 0.42
                parts.append(
                    f'<path d="M{x0:.1f},{y0:.1f} h{-s:.1f} l{s:.1f},{s:.1f} z" fill="{FLAG}" stroke="white" '
                    'stroke-width="0.8"/>'
                )
            parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
