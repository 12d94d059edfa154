"""End-to-end `classify` throughput against OpenVINO's benchmark_app on the same IR, side by side in one run.

    .venv/bin/python benchmarks/classify_throughput.py MODEL_DIR [--plate PLATE] [--layout bbbc021] [--precision auto]
        [--rounds 3]

MODEL_DIR is an export folder (model.xml, and model-int8.xml for --precision int8). With the default
--precision auto, classify runs as its defaults choose (appliance/precision.py) and benchmark_app
with ITS defaults on model.xml: the comparison a user makes of the two out of the box. Without
--plate, one synthetic plate at the model's field size (full resolution for a real model; 13
classes x --fields-per-class fields, 39 by default) is written to a temporary folder, as a BBBC021
plate; --layout NAME rewrites it, field for field with the same pixels, as that imager lays out a
plate (the layout tests' vendor-exact writers, tests/appliance/layouts/write_*.py, with the options
and --channels of tests/appliance/layouts/test_every_layout.py's LAYOUTS), and classify reads it
with that layout and those channels. Reading the BBBC021 plate's pixels for the rewrite is not timed.

Ours: classify_plate on the whole plate, the way `mcnn-appliance classify` and `watch` run it
(discovery, reading and decoding the images, inference, result files), its summary's fields_per_s; every round
writes to a fresh results folder, so no field is skipped as already done. The model is compiled
once and reused by every round, as `classify` does for the plates of one command and `watch` for
every plate; compiling and the first inferences are left out, as benchmark_app leaves them out.
The reference: benchmark_app (shipped in the openvino wheel) on the same IR and precision,
THROUGHPUT hint, random inputs already in memory: the ceiling of inference alone on this
machine. One untimed classify first brings the plate into the page cache, as any second read of a plate would find it.
The CPU, its AMX/BF16/VNNI features and OpenVINO's GEMM peaks are measured and printed first
(benchmarks/machine.py), and both throughputs as GOP/s and a share of the peak at the precision they ran.
Rounds alternate the two (classify first, then benchmark_app first, ...), so load from other
processes falls on both; the printed ratio is median ours / median benchmark_app. Target >= 0.90.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import openvino as ov

# The tests package of this checkout: the layout tests' vendor-exact writers rewrite the synthetic plate (--layout)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.classify import classify_plate
from appliance.inference import Classifier, check_card, read_card, resolve_model
from appliance.plate import discover_fields
from appliance.synth import write_dataset
from benchmarks.machine import compiled_precision, cpu_description, cpu_line, forward_gop, gemm_peaks, peaks_line
from export.benchmark import benchmark_app_fps
from tests.appliance.layouts.same_fields import pixels
from tests.appliance.layouts.test_every_layout import LAYOUTS

TARGET = 0.90


def synthetic_plate(folder: Path, size: tuple[int, int], fields_per_class: int) -> Path:
    """One synthetic BBBC021-layout plate of fields at `size`; returns the plate folder."""
    written = write_dataset(folder, plates=1, fields_per_class=fields_per_class, size=size, seed=0, workers=2)
    return folder / "Week1" / written["plates"][0]


def rewrite(plate: Path, size: tuple[int, int], layout: str, folder: Path) -> Path:
    """The BBBC021 plate's fields, the same pixels, written in `layout` (a key of the layout tests' LAYOUTS) by its
    writer into folder; returns the new plate. The source's pixels are read here, before anything is timed."""
    write, options, _ = LAYOUTS[layout]
    fields, failures = discover_fields(plate, "bbbc021")
    if failures:
        raise SystemExit(f"{plate}: {len(failures)} field(s) incomplete; cannot rewrite it in the {layout} layout")
    return write(folder, {(field.well, field.site): tuple(pixels(field, size)) for field in fields}, **options)


def classify_once(plate: Path, classifier: Classifier, out: Path, layout: str = "auto", channels=None) -> dict:
    summary = classify_plate(plate, classifier, out, layout=layout, channels=channels)
    if summary["counts"]["failed"]:
        print(f"  warning: {summary['counts']['failed']} field(s) failed (see {out}); they are not in fields/s")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="export folder")
    parser.add_argument("--plate", type=Path, help="plate folder (default: a synthetic plate at the model's size)")
    parser.add_argument(
        "--layout",
        default="bbbc021",
        choices=("bbbc021", *LAYOUTS),
        help="the synthetic plate's layout: rewritten, the same pixels, as that imager writes it",
    )
    parser.add_argument("--precision", default="auto", choices=("auto", "f32", "bf16", "int8"))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (median reported)")
    parser.add_argument("--app-seconds", type=int, default=15, help="benchmark_app's duration per round")
    parser.add_argument("--fields-per-class", type=int, default=3, help="synthetic plate: fields per class")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.plate is not None and args.layout != "bbbc021":
        parser.error("--layout rewrites the synthetic plate; a --plate is read in its own layout")

    cpu, peaks = cpu_description(), gemm_peaks()
    print(cpu_line(cpu))
    print(peaks_line(peaks))
    classifier = Classifier(args.model, precision=args.precision)
    print(f"classify: precision {classifier.choice.precision} ({classifier.choice.reason})")
    # benchmark_app: the same precision given, or with --precision auto its own defaults on model.xml
    app_precision = None if args.precision == "auto" else args.precision
    xml = resolve_model(args.model, args.precision if app_precision else "f32")
    network = ov.Core().read_model(xml)
    card = read_card(network, str(xml))
    check_card(network, card, str(xml))
    shape = (1, len(card.channels), *card.size)

    with tempfile.TemporaryDirectory(prefix="classify-throughput-") as tmp:
        tmp = Path(tmp)
        plate, reading = args.plate, {}
        if plate is None:
            plate = synthetic_plate(tmp / "plate", card.size, args.fields_per_class)
            print(f"synthetic plate: {plate} ({13 * args.fields_per_class} fields of {card.size[0]}x{card.size[1]})")
            if args.layout != "bbbc021":
                plate = rewrite(plate, card.size, args.layout, tmp / "rewritten")
                reading = {"layout": args.layout.split(" ")[0], "channels": LAYOUTS[args.layout][2]}
                print(f"rewritten in the {args.layout} layout (untimed): {plate}; --channels {reading['channels']}")
        print(f"benchmark_app: {xml}, precision {app_precision or 'its default'}; warm-up classify (untimed)")
        warmup = classify_once(plate, classifier, tmp / "warmup", **reading)
        precision_run = warmup["precision"]
        layout = args.layout if args.plate is None else warmup["layout"]  # a given plate's: as classify found it
        ours, app = [], []
        for r in range(args.rounds):
            order = ("classify", "app") if r % 2 == 0 else ("app", "classify")
            for which in order:
                if which == "classify":
                    ours.append(classify_once(plate, classifier, tmp / f"results-{r}", **reading)["fields_per_s"])
                else:
                    fps = benchmark_app_fps(xml, app_precision, shape, args.app_seconds)
                    if fps is None:
                        raise SystemExit(f"benchmark_app gave no throughput for {xml} at {app_precision or 'default'}")
                    app.append(fps)
            print(f"round {r + 1}: classify {ours[-1]:.2f} fields/s, benchmark_app {app[-1]:.2f} fields/s")

    ratio = statistics.median(ours) / statistics.median(app)
    gop = forward_gop(network)
    app_ran = compiled_precision(xml, app_precision)
    for name, fps, ran in (
        ("classify", statistics.median(ours), precision_run),
        ("benchmark_app", statistics.median(app), app_ran),
    ):
        print(f"{name}: {fps * gop:.0f} GOP/s = {fps * gop / peaks[ran]:.0%} of the {ran} GEMM peak")
    print(
        f"classify (end to end through the {layout} layout, reading and decoding included, ran at {precision_run}): "
        f"{statistics.median(ours):.2f} fields/s; benchmark_app: {statistics.median(app):.2f} fields/s "
        f"(medians of {args.rounds})"
    )
    print(
        f"classify / benchmark_app: {ratio:.2f} (target >= {TARGET:.2f}) " + ("met" if ratio >= TARGET else "NOT met")
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu,
                    "gemm_peaks_gop_per_s": peaks,
                    "model": str(xml),
                    "plate": str(args.plate or "synthetic"),
                    "layout": layout,
                    "precision": args.precision,
                    "precision_run": precision_run,
                    "classify_fields_per_s": ours,
                    "benchmark_app_fps": app,
                    "ratio": round(ratio, 3),
                    "target": TARGET,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
