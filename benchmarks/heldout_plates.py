"""The synthetic plates time_to_accuracy and recipe_compare train and score on, written once per workdir."""

from __future__ import annotations

from pathlib import Path


def heldout_plates(workdir: Path, args, size: tuple[int, int]) -> tuple[Path, Path]:
    """(data, heldout) under workdir: `args.plates` training plates of the training compounds and one
    held-out plate of the next week and the held-out compounds (synth.write_heldout_split), written
    unless an earlier run with the same workdir left them."""
    from appliance.synth import write_heldout_split

    data, heldout = workdir / "data", workdir / "heldout"
    if not (heldout / "BBBC021_v1_image.csv").is_file():
        trained, held = write_heldout_split(
            data,
            heldout,
            args.plates,
            args.fields_per_class,
            args.heldout_fields_per_class,
            size=size,
            workers=args.workers,
        )
        seconds = trained["seconds"] + held["seconds"]
        print(f"wrote {trained['fields']} + {held['fields']} held-out fields in {seconds:.0f} s", flush=True)
    return data, heldout
