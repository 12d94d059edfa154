"""Which recipe learns better: train each on the same synthetic set, score each on a held-out week.

    .venv/bin/python benchmarks/recipe_compare.py [--size 256x384] [--epochs 10] [--batch-size 4] [--seeds 0 1]

Writes synthetic plates once (`--plates` training plates, plus one more plate of another week
held out entirely), then for every seed trains every recipe of training/recipes.py's RECIPES
(`--recipes`) with the same epochs, batch, seed and data, and scores each run on the held-out
plate (torch, the run's own normalisation). Prints, side by side, the final validation and
held-out accuracy of every run, then each recipe's mean and the spread over seeds: the noise
a difference must exceed to mean anything. `--json` writes the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages of this checkout

from benchmarks.machine import announce  # noqa: E402


def heldout_accuracy(run: Path, heldout: Path, workers: int) -> tuple[float, int]:
    from torch.utils.data import DataLoader

    from appliance.layouts.bbbc021 import load_fields
    from appliance.normalization import Normalization
    from training.dataset import FieldDataset
    from training.run import load_run
    from training.step import evaluate

    model, info = load_run(run)
    size = (model.config.height, model.config.width)  # the run's own size
    fields = load_fields(heldout)
    dataset = FieldDataset(fields, info["labels"], size, Normalization.from_dict(info["normalization"]))
    _, correct, n = evaluate(model, DataLoader(dataset, batch_size=8, num_workers=workers), info["precision"])
    return correct / n, n


def main() -> None:
    from rich.console import Console

    from appliance.synth import write_dataset
    from training.recipes import RECIPES, TrainConfig, peak_lr, resolve_recipe
    from training.train import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("recipe-compare"))
    parser.add_argument("--size", default="256x384", help="HEIGHTxWIDTH, multiples of 128")
    parser.add_argument("--plates", type=int, default=2, help="training plates (one week each)")
    parser.add_argument("--fields-per-class", type=int, default=8, help="per training plate")
    parser.add_argument("--heldout-fields-per-class", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="global batch (one process, no accumulation)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    announce()

    data, heldout = args.workdir / "data", args.workdir / "heldout"
    if not (data / "BBBC021_v1_image.csv").is_file():
        write_dataset(data, plates=args.plates, fields_per_class=args.fields_per_class, size=size, workers=args.workers)
    if not (heldout / "BBBC021_v1_image.csv").is_file():
        write_dataset(
            heldout,
            plates=1,
            fields_per_class=args.heldout_fields_per_class,
            size=size,
            workers=args.workers,
            first_plate=args.plates,
        )

    rows = []
    for seed in args.seeds:
        for name in args.recipes:  # recipes alternate, so a neighbour's load hits them alike
            cfg = resolve_recipe(
                TrainConfig(
                    data=str(data),
                    out=str(args.workdir / f"{name}-seed{seed}"),
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    size=size,
                    seed=seed,
                    recipe=name,
                    workers=args.workers,
                )
            )
            start = time.time()
            result = train(cfg, console=Console(quiet=True))
            last = result["history"][-1]
            accuracy, n = heldout_accuracy(Path(result["run"]), heldout, args.workers)
            rows.append(
                {
                    "recipe": name,
                    "optimizer": cfg.optimizer,
                    "peak_lr": peak_lr(cfg, args.batch_size),
                    "weight_decay": cfg.weight_decay,
                    "warmup_epochs": cfg.warmup_epochs,
                    "seed": seed,
                    "train_loss": last["train_loss"],
                    "val_acc": last["val_acc"],
                    "heldout_acc": accuracy,
                    "heldout_fields": n,
                    "minutes": round((time.time() - start) / 60, 2),
                }
            )
            r = rows[-1]
            print(
                f"{name:<6} seed {seed}: held-out {accuracy:.3f}, val {r['val_acc']:.3f}, "
                f"train loss {r['train_loss']:.3f} ({r['minutes']:.1f} min)",
                flush=True,
            )

    print(
        f"\n{size[0]}x{size[1]}, {args.epochs} epochs, batch {args.batch_size}, held-out plate of "
        f"{rows[0]['heldout_fields']} fields (another week)"
    )
    print(
        f"{'recipe':<7} {'optimizer':<9} {'peak lr':>9} {'seed':>4} {'train loss':>10} {'val acc':>7} "
        f"{'held-out':>8} {'min':>5}"
    )
    for r in rows:
        print(
            f"{r['recipe']:<7} {r['optimizer']:<9} {r['peak_lr']:>9.3g} {r['seed']:>4} {r['train_loss']:>10.3f} "
            f"{r['val_acc']:>7.3f} {r['heldout_acc']:>8.3f} {r['minutes']:>5.1f}"
        )
    summary = {}
    for name in args.recipes:
        accs = [r["heldout_acc"] for r in rows if r["recipe"] == name]
        summary[name] = {
            "heldout_mean": round(statistics.mean(accs), 4),
            "heldout_spread": round(max(accs) - min(accs), 4),
            "seeds": len(accs),
        }
        print(
            f"{name}: held-out accuracy mean {summary[name]['heldout_mean']:.3f}, spread over "
            f"{len(accs)} seed(s) {summary[name]['heldout_spread']:.3f}"
        )
    if len(args.recipes) == 2:
        a, b = args.recipes
        print(f"{b} - {a}: {summary[b]['heldout_mean'] - summary[a]['heldout_mean']:+.3f} held-out accuracy")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "size": list(size),
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "rows": rows,
                    "summary": summary,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
