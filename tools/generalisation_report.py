"""Generalisation report for the shipped models -> reports/generalisation.md.

For each shipped model (trained_models/shipped.json), on its own held-out group-split test images:
metrics at 0.5 and at the run's operating threshold, calibration (ECE before/after temperature),
test-time augmentation (horizontal flip), the out-of-distribution check on those test images and
on non-brain probe images (bt_core.evaluation.probes), and "simulated other scanners": the same test images
degraded (blur, noise, gamma, contrast, bias field, low resolution, JPEG artefacts, inverted
contrast), with accuracy overall and on the images the OOD check accepts.

Usage: python tools/generalisation_report.py --data ../shared/data/br35h [--out reports/generalisation.md]
       [--runs RUN [RUN ...]]   (run folders or ids instead of the shipped ones, e.g. a candidate)
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse
import time
from pathlib import Path

import numpy as np

from bt_core.evaluation import calibration, metrics, probes
from bt_core import data, runs
from bt_core.data import degrade
from bt_core.serving.inference import Predictor


def evaluate(pred: Predictor, imgs, y) -> dict:
    ans = pred.answer(list(imgs), threshold=pred.threshold)
    prob = np.array([a.prob for a in ans])
    flags = np.array([a.ood for a in ans])
    out = {"accuracy": metrics.binary_metrics(y, prob, pred.threshold)["accuracy"], "flagged": float(flags.mean())}
    keep = ~flags
    out["accepted_accuracy"] = float(((prob[keep] >= pred.threshold) == y[keep]).mean()) if keep.any() else float("nan")
    return out


def pct(x) -> str:
    return "n/a" if not np.isfinite(x) else f"{100 * x:.2f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="reports/generalisation.md")
    ap.add_argument("--runs", nargs="+", help="run folders or ids (default: the shipped runs)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    shipped = {str(r): runs.resolve(r) for r in args.runs} if args.runs else runs.shipped()
    md = ["# Generalisation of the " + ("given runs" if args.runs else "shipped models"), "",
          f"Command: `python tools/generalisation_report.py {' '.join(sys.argv[1:])}`; {time.strftime('%Y-%m-%d')}. "
          "All figures are on each run's held-out group-split test images (no near-duplicate in training).", ""]
    probe = probes.non_brain_images()
    ds = data.load_folder(args.data, 240)
    for kind, rid in shipped.items():
        pred = Predictor(rid)
        rec = pred.record
        if ds.fingerprint != rec["data"]["fingerprint"] and ds.paths != rec["data"]["paths"]:
            raise SystemExit("the data folder is not the one the model was trained on")
        idx = np.asarray(rec["test"]["idx"])
        imgs, y = ds.images[idx], ds.labels[idx]
        x = pred.batch(list(imgs))
        p = pred.probabilities(x)
        p_flip = pred.probabilities(x[:, :, ::-1])
        p_raw = np.asarray(rec["test"]["prob"])
        m05, mop = metrics.binary_metrics(y, p, 0.5), metrics.binary_metrics(y, p, pred.threshold)
        mtta = metrics.binary_metrics(y, (p + p_flip) / 2, pred.threshold)
        md += [f"## {rec.get('label', rid)}", "", "| measure | value |", "|---|---|",
               f"| test accuracy at 0.5 | {pct(m05['accuracy'])} |", f"| test AUC | {m05['auc']:.4f} |",
               f"| threshold for sensitivity >= {rec.get('operating_point', {}).get('target_sensitivity', 'n/a')} "
               f"(chosen on out-of-fold predictions) | {pred.threshold:.4f} |",
               f"| test sensitivity / specificity / accuracy there | {pct(mop['sensitivity'])} / {pct(mop['specificity'])} / {pct(mop['accuracy'])} |",
               f"| with flip test-time augmentation | {pct(mtta['sensitivity'])} / {pct(mtta['specificity'])} / {pct(mtta['accuracy'])}, AUC {mtta['auc']:.4f} |",
               f"| test ECE, raw / temperature-scaled (T = {pred.temperature:.3f}) | "
               f"{calibration.expected_calibration_error(y, p_raw):.4f} / {calibration.expected_calibration_error(y, p):.4f} |"]
        if pred.ood is not None:
            flags_test = np.array([a.ood for a in pred.answer(list(imgs))])
            flags_probe = np.array([a.ood for a in pred.answer([im for _, im in probe])])
            missed = [n for (n, _), f in zip(probe, flags_probe) if not f]
            md += [f"| held-out Br35H test images flagged as unlike training | {pct(flags_test.mean())} ({int(flags_test.sum())} of {len(flags_test)}) |",
                   f"| non-brain probe images flagged | {int(flags_probe.sum())} of {len(probe)}"
                   + (f" (missed: {', '.join(missed)})" if missed else "") + " |"]
        md += ["", "Simulated other scanners (test images degraded):", "",
               "| degradation | accuracy | flagged unlike training | accuracy on accepted |", "|---|---|---|---|"]
        for name, fn in degrade.fixed().items():
            r = evaluate(pred, np.stack([fn(im) for im in imgs]), y)
            md.append(f"| {name} | {pct(r['accuracy'])} | {pct(r['flagged'])} | {pct(r['accepted_accuracy'])} |")
        md.append("")
        print(f"done {kind}", flush=True)
    md.append(f"Wall time {(time.perf_counter() - t0) / 60:.1f} min.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(md) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
