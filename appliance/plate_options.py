"""The options of `classify` and `watch` that say how a plate is read and classified, written once.

watch also reads them from mcnn-watch.toml in its inbox, and classify_plate takes them under the
same names. Typer reads a command's options from its signature, so `with_plate_options` adds them
to both commands' signatures instead of each writing them out.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Literal

import typer

from appliance.plate import LAYOUTS

PRECISIONS = ("auto", "f32", "bf16", "int8")  # the one spelling of every command
PrecisionOption = Annotated[
    Literal[PRECISIONS] | None,
    typer.Option(
        help="auto (the default: int8 if the export's INT8 model passed its accuracy gate, else bf16 where the "
        "CPU computes it natively, else f32), f32, bf16 or int8 (model-int8.xml). The choice is printed and "
        "recorded in summary.json."
    ),
]
LayoutOption = Annotated[
    Literal[LAYOUTS] | None,
    typer.Option(metavar="LAYOUT", help=f"{', '.join(LAYOUTS)} (the default: auto, recognised); see README."),
]
ChannelsOption = Annotated[
    str | None,
    typer.Option(
        metavar="MAP", help="Plate channel (id or name) of each model channel, e.g. DAPI=w1,Tubulin=w2,Actin=w4."
    ),
]
PlatemapOption = Annotated[
    Path | None,
    typer.Option(
        metavar="CSV",
        help="CSV with columns well, compound, concentration (optional plate), or a pycytominer/JUMP platemap "
        "(plate_map_name, well_position, broad_sample, mmoles_per_liter, solvent).",
    ),
]
FitOption = Annotated[
    Literal["pad", "resize"] | None,
    typer.Option(
        help="Fields of another size: pad (zeros, centred) or resize (keeps aspect, then pads); "
        "recorded per field in Metadata_Fit."
    ),
]
PlaneOption = Annotated[int | None, typer.Option(help="The z-plane to read, as the imager numbers them.")]
TimepointOption = Annotated[int | None, typer.Option(help="The time point to read, as the imager numbers them.")]
ProjectOption = Annotated[
    Literal["max"] | None, typer.Option(help="max: maximum-intensity projection over every z-plane.")
]
EmbeddingsOption = Annotated[
    bool,
    typer.Option(
        "--embeddings",
        help="Also write embeddings.parquet (512 features per field) and profiles.parquet (well medians), "
        "as pycytominer reads them.",
    ),
]
PlateWellsOption = Annotated[
    int | None,
    typer.Option(
        metavar="WELLS",
        help="The plate's size, 6 to 1536 wells, for the plate map and CPA (default: the smallest of 96, 384, "
        "1536 holding every well).",
    ),
]
CpaOption = Annotated[
    bool, typer.Option("--cpa", help="Also write cpa.properties and cpa.db: the plate in CellProfiler Analyst.")
]
SHARED_OPTIONS = {  # name: (type and help, default), in --help's order
    "precision": (PrecisionOption, None),
    "layout": (LayoutOption, None),
    "channels": (ChannelsOption, None),
    "platemap": (PlatemapOption, None),
    "fit": (FitOption, None),
    "plane": (PlaneOption, None),
    "timepoint": (TimepointOption, None),
    "project": (ProjectOption, None),
    "embeddings": (EmbeddingsOption, False),
    "plate_wells": (PlateWellsOption, None),
    "cpa": (CpaOption, False),
}


QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress lines; problems are still printed.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")]


def with_plate_options(command):
    """Give a command the options classify and watch share (SHARED_OPTIONS), as keyword parameters: Typer reads
    a command's options from its signature, so they are added to it here instead of written out twice."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]  # not **shared
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in SHARED_OPTIONS.items()
    ]
    command.__signature__ = signature.replace(parameters=[*own, *shared])
    command.__annotations__ = {**command.__annotations__, **{p.name: p.annotation for p in shared}}
    return command


def check_plate_options(layout: str, fit: str | None) -> str:
    if layout not in LAYOUTS:
        raise typer.BadParameter(f"{layout!r}: choose one of {', '.join(LAYOUTS)}", param_hint="--layout")
    if fit not in (None, "pad", "resize"):
        raise typer.BadParameter(f"{fit!r}: choose pad or resize", param_hint="--fit")
    return layout
