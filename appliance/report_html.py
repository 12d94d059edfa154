"""The pieces every HTML report here is built of: the inline CSS, escaped table cells and tables,
class colour dots, and the page around a body. Values are escaped where they enter a cell."""

from __future__ import annotations

from html import escape

from appliance.platemap import class_colour

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 78em;
       padding: 0 1.5em; color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #e2e2e2; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { background: none; font-weight: 600; width: 14em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 50%; vertical-align: -0.1em;
          margin-right: 0.4em; }
.warn { background: #fff4d6; border-left: 4px solid #e69f00; padding: 0.6em 1em; }
.bad { color: #b3261e; font-weight: 600; } .muted { color: #666; }
code { font-size: 0.95em; word-break: break-all; }
.bar { display: flex; width: 24em; height: 1em; border-radius: 2px; overflow: hidden; background: #eee; }
svg.platemap { max-width: 100%; height: auto; display: block; margin: 0.6em 0; }
svg.platemap g.well:hover circle { stroke: #1a1a1a; stroke-width: 2; }
.legend span.item { margin-right: 1.2em; white-space: nowrap; }
.flag { background: #c0392b; color: white; border-radius: 3px; padding: 0 0.3em; font-size: 0.85em; }
h3 { font-size: 1em; margin: 1.4em 0 0.3em; } h3 .muted { font-weight: normal; font-size: 0.9em; }
div.row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 0.6em; margin: 0.3em 0; }
div.row .side { width: 8.5em; color: #666; font-size: 0.9em; padding-top: 0.3em; }
figure { margin: 0; font-size: 0.8em; text-align: center; }
img.thumb { display: block; width: 128px; height: auto; image-rendering: auto; background: #000; border-radius: 2px; }
figcaption { margin-top: 0.15em; font-variant-numeric: tabular-nums; }
table.confusion th.rot { writing-mode: vertical-rl; transform: rotate(180deg); font-weight: 500; padding: 0.4em 0.2em; }
table.confusion tbody th { font-weight: normal; background: none; }
table.confusion td { min-width: 1.6em; text-align: center; }
"""


def text(value) -> str:
    """A table value as the report shows it: nothing for unknown, 0.3 not 0.300000 for a number."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def number(value, digits: int = 2) -> str:
    """A figure rounded to digits; "-" when unknown, as given when it is not a number."""
    if value is None or value == "":
        return "-"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def cell(value, numeric: bool = False) -> str:
    return f'<td class="n">{escape(text(value))}</td>' if numeric else f"<td>{escape(text(value))}</td>"


def table(header: list[str], rows: list[list[str]]) -> str:
    """header: plain text; rows: lists of <td> cells, already escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: list[tuple[str, str]]) -> str:
    """Two-column table; values already escaped HTML."""
    return '<table class="kv">' + "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in pairs) + "</table>"


def swatch(index: int) -> str:
    return f'<span class="swatch" style="background:{class_colour(index)}"></span>'


def page(title: str, body: str) -> str:
    """A whole self-contained HTML page: the CSS inline, nothing fetched."""
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )
