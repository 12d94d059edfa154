"""Which recipe learns better: train each on the same synthetic set, score each on a held-out plate.

    .venv/bin/python benchmarks/recipe_compare.py [--size 256x384] [--epochs 10] [--batch-size 4] [--seeds 0 1]
    .venv/bin/python benchmarks/recipe_compare.py --accumulation 16 --epochs 40   # global batch 64: the paper's regime

Writes synthetic plates once (`--plates` training plates of the training compounds, plus one
plate of the next week showing only the held-out compounds: not-same-compound), then for every
seed trains every recipe of training/recipes.py's RECIPES (`--recipes`) with the same epochs,
batch, seed and data, validating every epoch on the held-out plate (`train --val-data`). The
global batch is `--batch-size` x `--accumulation` (one process); each recipe scales its rate to it
as `train` does. Prints, side by side, every run's held-out accuracy after its last epoch, then
each recipe's mean and the spread over seeds: the noise a difference must exceed to mean
anything. `--json` writes the same.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the packages of this checkout

from benchmarks.heldout_plates import heldout_plates  # noqa: E402
from benchmarks.machine import announce  # noqa: E402


def main() -> None:
    from rich.console import Console

    from training.recipes import RECIPES, TrainConfig, peak_lr, resolve_recipe
    from training.train import train

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("recipe-compare"))
    parser.add_argument("--size", default="256x384", help="HEIGHTxWIDTH, multiples of 128")
    parser.add_argument("--plates", type=int, default=2, help="training plates (one week each)")
    parser.add_argument("--fields-per-class", type=int, default=8, help="per training plate")
    parser.add_argument("--heldout-fields-per-class", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4, help="fields per forward pass (one process)")
    parser.add_argument("--accumulation", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    announce()

    data, heldout = heldout_plates(args.workdir, args, size)
    global_batch = args.batch_size * args.accumulation

    rows = []
    for seed in args.seeds:
        for name in args.recipes:  # recipes alternate, so a neighbour's load hits them alike
            cfg = resolve_recipe(
                TrainConfig(
                    data=str(data),
                    out=str(args.workdir / f"{name}-seed{seed}"),
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    accumulation=args.accumulation,
                    size=size,
                    seed=seed,
                    recipe=name,
                    workers=args.workers,
                    val_data=str(heldout),
                )
            )
            start = time.time()
            result = train(cfg, console=Console(quiet=True))
            last = result["history"][-1]
            accuracy = last["val_acc"]  # the held-out plate, validated after the last epoch
            n = json.loads((Path(result["run"]) / "run.json").read_text())["fields"]["val"]
            rows.append(
                {
                    "recipe": name,
                    "optimizer": cfg.optimizer,
                    "peak_lr": peak_lr(cfg, global_batch),
                    "weight_decay": cfg.weight_decay,
                    "warmup_epochs": cfg.warmup_epochs,
                    "seed": seed,
                    "train_loss": last["train_loss"],
                    "heldout_acc": accuracy,
                    "heldout_fields": n,
                    "minutes": round((time.time() - start) / 60, 2),
                }
            )
            r = rows[-1]
            print(
                f"{name:<6} seed {seed}: held-out {accuracy:.3f}, "
                f"train loss {r['train_loss']:.3f} ({r['minutes']:.1f} min)",
                flush=True,
            )

    print(
        f"\n{size[0]}x{size[1]}, {args.epochs} epochs, global batch {global_batch} ({args.batch_size} x "
        f"{args.accumulation}), held-out plate of {rows[0]['heldout_fields']} fields (another week, other compounds)"
    )
    print(f"{'recipe':<7} {'optimizer':<9} {'peak lr':>9} {'seed':>4} {'train loss':>10} {'held-out':>8} {'min':>5}")
    for r in rows:
        print(
            f"{r['recipe']:<7} {r['optimizer']:<9} {r['peak_lr']:>9.3g} {r['seed']:>4} {r['train_loss']:>10.3f} "
            f"{r['heldout_acc']:>8.3f} {r['minutes']:>5.1f}"
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
