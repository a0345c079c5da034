"""Ablation table from run records -> reports/ablation.md.

Every run given (folders with run.json) is one row: what differs in its config, its CV validation
accuracy per fold and mean (the choice is made on these, never on the test set), and its test
metrics on the same group-split test images. Runs on the same split share folds and test images,
so rows are directly comparable; a paired t-test on fold accuracies against the first run is given.

RUN is a run id in the registry (trained_models/) or a run folder; reports/runs/ keeps the records of
the runs the report cites that are not shipped. Notes come from --notes FILE (one markdown bullet
each) or --note.

Usage: python tools/ablation_report.py RUN [RUN ...] [--out reports/ablation.md] [--notes FILE] [--note "..."]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse
import time
from pathlib import Path

import numpy as np

from bt_core import runs
from bt_core.evaluation import stats
from bt_core.config import TrainConfig

SHOWN = ("model", "image_size", "head_pool", "lr", "preprocess", "pooling", "mirror", "degrade_copies", "augment",
         "fine_tune_from", "epochs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="reports/ablation.md")
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("--notes", help="a markdown file of notes, one '- ' bullet each")
    args = ap.parse_args()
    if args.notes:
        text = Path(args.notes).read_text()
        args.note = [b.strip().replace("\n", " ") for b in text.split("\n- ") if b.strip()] + args.note
        args.note = [n[2:] if n.startswith("- ") else n for n in args.note]
    recs = [runs.load_run(r) for r in args.runs]
    base = [f["metrics"]["accuracy"] for f in recs[0]["folds"]]
    md = ["# Ablation: what each training choice does on held-out groups", "",
          f"Command: `python tools/ablation_report.py {' '.join(sys.argv[1:])}`; "
          f"{time.strftime('%Y-%m-%d')}. All runs: group-aware split, seed 42, same folds and test images; "
          "choices are judged on the CV validation folds, the test columns are for the record.", "",
          "| run | " + " | ".join(SHOWN) + " | CV accuracy per fold | CV mean | paired t vs first (p) | test accuracy | test AUC | train time |",
          "|---" * (len(SHOWN) + 7) + "|"]
    for rec in recs:
        cfg = TrainConfig.from_dict(rec["config"]).to_dict()  # older records: defaults filled in
        acc = [f["metrics"]["accuracy"] for f in rec["folds"]]
        t = stats.paired_ttest(acc, base) if rec is not recs[0] else None
        test = rec["test"]["metrics"]
        md.append(f"| {rec.get('label', rec['id'])} | " + " | ".join(str(cfg.get(k, "")) for k in SHOWN)
                  + f" | {' / '.join(f'{100 * a:.2f}' for a in acc)} | {100 * np.mean(acc):.2f}% | "
                  + (f"{t['t']:.2f} ({t['p']:.2f})" if t else "-")
                  + f" | {100 * test['accuracy']:.2f}% | {test['auc']:.4f} | {rec['wall_time_s'] / 60:.1f} min |")
    md += [""] + [f"- {n}" for n in args.note]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(md) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
