"""Write trained_models/README.md (the model card) from the shipped runs' own records.

Every figure in the card is read from a run.json in trained_models/, so rerunning this script after
retraining keeps the card true. Usage: python tools/make_model_card.py [--root trained_models]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse
import json
from pathlib import Path

import numpy as np

from bt_core.evaluation import held_out, metrics


def pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


def ci(d) -> str:
    return f"{pct(d['value'])} (95% CI {pct(d['low'])} to {pct(d['high'])})"


def describe(kind: str, rec: dict, folder: Path) -> list[str]:
    cfg = rec["config"]
    test = rec["test"]
    c = metrics.metrics_with_ci(test["y"], test["prob"])
    op = rec.get("operating_point") or {}
    cal = rec.get("calibration") or {}
    ood = rec.get("ood") or {}
    fold_acc = [f["metrics"]["accuracy"] for f in rec.get("folds", [])]
    size_mb = sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) / 1e6
    lines = [f"## {rec.get('label', rec['id'])}", "",
             f"- run: `{rec['id']}` ({size_mb:.1f} MB), {rec.get('params', 0):,} parameters; "
             f"trained with `{rec.get('command', 'python -m bt_core cv')}`",
             f"- model: `{cfg['model']}`" + (f", backbone `{cfg['backbone']}`" if cfg["model"] == "transfer" else "")
             + (" (EfficientNet-Lite0 to block 10, ImageNet weights, a head that scores every 16-px cell with "
                f"{cfg.get('head_depth', 0)} 3x3 context layers, trained with the expert masks as a per-cell target; "
                + ("backbone frozen" if cfg.get("freeze_backbone") else "blocks 08-10 fine-tuned") + ")"
                if cfg["model"] == "patch" else "")
             + (f", {cfg['views']} augmented view(s) per training image" if cfg.get("views") else "")
             + (", every (source family, class) pair weighted the same" if cfg.get("balance") in ("source", "position") else "")
             + (f", slice position balanced out of the label{position_detail(cfg)}" if cfg.get("balance") == "position" else "")
             + f", input {cfg['image_size']}x{cfg['image_size']} grey, preprocess `{cfg['preprocess']}`, "
             f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, Adam {cfg['lr']}"
             + (f", backbone fine-tuned after `{cfg['fine_tune_from']}`" if cfg.get("fine_tune_from") else "")
             + (f", pooling `{cfg.get('pooling', 'avg')}`" if cfg["model"] == "transfer" else "")
             + (", features averaged over the image and its mirror image" if cfg.get("mirror") else "")
             + (f", trained also on {cfg['degrade_copies']} randomly degraded copies of each training image (blur, "
                "noise, low resolution, JPEG; `bt_core.data.degrade`)" if cfg.get("degrade_copies") else ""),
             f"- split: {cfg['split']} ({'leak-free: near-duplicates never straddle train and test' if cfg['split'] == 'group' else 'random, leaky'}), "
             f"seed {cfg['seed']}, {len(rec['split']['train_idx'])} train / {len(test['idx'])} test images",
             f"- {len(fold_acc)}-fold CV accuracy on the training part: " + ", ".join(pct(a) for a in fold_acc)
             + (f" (mean {pct(np.mean(fold_acc))})" if fold_acc else ""),
             f"- test at threshold 0.5: accuracy {ci(c['accuracy'])}, sensitivity {ci(c['sensitivity'])}, "
             f"specificity {ci(c['specificity'])}, AUC {ci(c['auc'])}"]
    if op and ood:
        lines.append(f"- calibrated with `python -m bt_core calibrate {rec['id']} --target-sensitivity "
                     f"{op['target_sensitivity']:g} --ood-quantile {ood['quantile']:g}"
                     + (f" --loso {rec['abstain']['loso_run']} --abstain-target {rec['abstain']['target']:g}"
                        if rec.get("abstain") else "") + "`"
                     + (f" ({rec['calibrate_wall_time_s'] / 60:.1f} min)" if rec.get("calibrate_wall_time_s") else ""))
    if op:
        t = op["test"]
        lines.append(f"- operating point (threshold {op['threshold']:.4f}, chosen on out-of-fold predictions for "
                     f"sensitivity >= {op['target_sensitivity']:.2f}): test sensitivity {pct(t['sensitivity'])}, "
                     f"specificity {pct(t['specificity'])}, accuracy {pct(t['accuracy'])}")
    if cal:
        lines.append(f"- calibration: temperature {cal['temperature']:.3f}; test ECE {cal['ece_test_before']:.4f} before, "
                     f"{cal['ece_test_after']:.4f} after")
    if ood:
        lines.append(f"- out-of-distribution check on layer `{ood['layer']}` ({ood['method']}): threshold at the "
                     f"{ood['quantile']:.2f} quantile of held-out training scores; flags {ood['test_flagged']} of "
                     f"{ood['test_n']} test images")
    if rec.get("plane"):
        pl = rec["plane"]
        lines.append(f"- plane detector (`{pl['file']}`, logistic regression on pooled `{pl['layer']}` features): test "
                     f"accuracy {pct(pl['test_accuracy'])} on {pl['test_n']} images with a known plane ("
                     + ", ".join(f"{k} {pct(v)}" for k, v in pl["test_per_plane"].items())
                     + "); a slice it sees as coronal or sagittal gets no answer")
    if rec.get("abstain"):
        ab = rec["abstain"]
        if ab.get("met", True):
            lines.append(f"- abstention band: no answer when the calibrated probability lies in ({ab['low']:.2f}, "
                         f"{ab['high']:.2f}); fitted on the leave-one-source-out run `{ab['loso_run']}` so that accuracy "
                         f"on answered images is at least {pct(ab['target'])} on every source (worst "
                         f"{pct(ab['worst_accuracy'])}), answering {pct(ab['coverage'])} of images on average")
        else:
            lines.append(f"- abstention band: **none**. No band fitted on the leave-one-source-out run `{ab['loso_run']}` "
                         f"reaches {pct(ab['target'])} accuracy on answered images on every source (worst source: "
                         f"{pct(ab['worst_accuracy'])}), so the model refuses nothing on confidence "
                         "alone; only the out-of-distribution and plane checks refuse")
    srcs = rec["data"].get("sources") or []
    if len(srcs) > 1:
        lines += ["- trained on " + ", ".join(f"`{s['name']}` ({rec['data']['trained_on'].get(s['name'], 0)} of "
                                             f"{s['n']})" for s in srcs) + "; group-aware test part per source "
                  "(threshold 0.5; `reports/sources.md` has the leave-one-source-out figures):", "",
                  "  | source | n | accuracy | sensitivity | specificity | AUC |", "  |---|---:|---:|---:|---:|---:|"]
        for name, m in rec["test"]["per_source"].items():
            cls = metrics.defined_metrics([y for y, s in zip(test["y"], test["source"]) if s == name])
            lines.append(f"  | {name} | {m['n']} | {pct(m['accuracy'])} | "
                         f"{pct(m['sensitivity']) if 'sensitivity' in cls else '–'} | "
                         f"{pct(m['specificity']) if 'specificity' in cls else '–'} | {pct(m['auc']) if 'auc' in cls else '–'} |")
        lines.append("")
    lines.append(f"- trained on: {rec['hardware'].get('cpu_model') or rec['hardware'].get('processor')} ({rec['hardware'].get('cpus')} CPUs), Keras "
                 f"{rec['hardware'].get('keras')} on {rec['hardware'].get('backend')}, {rec['wall_time_s'] / 60:.1f} min")
    return lines + [""]


def held_out_run(rec: dict, runs_dir: Path) -> dict | None:
    """The leave-one-source-out run that measured ``rec``'s recipe, read whole: the one its abstention band
    names, or else the newest in ``runs_dir`` of the same recipe (:func:`bt_core.evaluation.held_out.measured_by`)."""
    lo = held_out.measured_by(rec, [runs_dir])
    return json.loads((Path(lo["dir"]) / "run.json").read_text()) if lo else None


def operating_sentence(kind: str, rec: dict, lo: dict | None) -> str:
    """What the shipped model's answers at its own operating point met on unseen sources (as the app says it)."""
    if lo is None or not lo.get("held_out"):
        return ""
    thr = float((rec.get("operating_point") or {}).get("threshold", 0.5))
    table = held_out.unseen_at(lo, thr, float((rec.get("calibration") or {}).get("temperature", 1.0)))
    per = ", ".join(f"{r['held-out source']} {pct(r['accuracy'])}" for _, r in table.iterrows())
    return f" {kind}, answering as the app does (calibrated, at its operating point), " \
        + held_out.expectation(table, lo["id"], thr) + f" (per source: {per})."


def held_out_range(lo: dict | None) -> str:
    """"50 to 73% (leave-one-source-out run `ID`)" from the run's per-source held-out accuracies."""
    if lo is None:
        return "an unmeasured accuracy (no leave-one-source-out run of this recipe is in `reports/runs`)"
    accs = [m["accuracy"] for h in lo["held_out"].values() for m in h["per_source"].values()]
    return (f"{100 * min(accs):.0f} to {100 * max(accs):.0f}% (leave-one-source-out run `{lo['id']}`, "
            "`reports/sources.md`)")


PREPROCESS_WORDS = {"percentile": "per-image percentile normalisation", "none": "no normalisation",
                    "equalize": "histogram equalisation of the head in each slice"}


def refusal_sentence(lo: dict | None) -> str:
    """What the out-of-distribution and plane checks do on unseen sources, from the run's ``loso-checks``."""
    checks = (lo or {}).get("checks")
    if not checks:
        return ("Its out-of-distribution and plane checks have not been judged on sources they never saw "
                "(`python -m bt_core loso-checks`).")
    per = [(m, lo["held_out"][f]["per_source"][s]["accuracy"])
           for f, c in checks["held_out"].items() for s, m in c["per_source"].items()]
    refused = [m["refused"] for m, _ in per]
    kept = [m["accuracy_accepted"] for m, _ in per if m["accuracy_accepted"] is not None]
    alls = [a for _, a in per]
    return (f"Its out-of-distribution and plane checks, fitted without the held-out source, refuse "
            f"{100 * min(refused):.0f} to {100 * max(refused):.0f}% of it, and the accuracy on what they accept is "
            f"{100 * min(kept):.0f} to {100 * max(kept):.0f}% (against {100 * min(alls):.0f} to {100 * max(alls):.0f}% "
            f"on all; `python -m bt_core loso-checks reports/runs/{lo['id']}`): they say that a scan is unlike the "
            "training data, they do not pick out the wrong answers.")


def position_detail(cfg: dict) -> str:
    """How far a ``--balance position`` run evened the classes along the volume, as its options."""
    strength, reference = cfg.get("position_strength", 1.0), cfg.get("position_reference", "both")
    opts = " --balance position" + (f" --position-strength {strength:g}" if strength != 1.0 else "") \
        + (f" --position-reference {reference}" if reference != "both" else "")
    return (" part of the way" if strength != 1.0 else "") + f" (`{opts.strip()}`)"


def position_sentence(rec: dict) -> str:
    """What the model's own LGG test part says about slice position (``breakdown.shortcut_splits``), or ""."""
    from bt_core.evaluation import breakdown

    t = rec["test"]
    rows = breakdown.rows_by_family(rec, t["idx"], t["y"], t["prob"], t["source"]).get("lgg")
    acc = {(r["split"], r["part"]): r["accuracy"] for r in breakdown.shortcut_splits({"lgg": rows or []})}
    parts = []
    for cls in ("no tumour", "tumour"):
        mid, edge = acc.get((f"slice position, {cls}", breakdown.MIDDLE)), acc.get((f"slice position, {cls}", breakdown.EDGE))
        if mid is not None and edge is not None:
            parts.append(f"its {cls.replace(' ', '-')} slices in the middle half of a volume are right {pct(mid)} of the time, at the top "
                         f"and bottom {pct(edge)}")
    trained = f"trained with slice position balanced out of the label{position_detail(rec['config'])}; " \
        if rec["config"].get("balance") == "position" else ""
    return (" On its own LGG test part (" + trained + "`reports/sources.md`, the test part's shortcut checks) "
            + "; ".join(parts) + ".") if parts else ""


def paper_cnn_line(root: Path) -> str:
    """The paper-exact CNN on the same split, if such a run is in the registry."""
    for folder in sorted(root.glob("*/run.json")):
        rec = json.loads(folder.read_text())
        if rec.get("config", {}).get("model") == "paper_cnn" and rec["config"].get("split") == "group":
            m = metrics.metrics_with_ci(rec["test"]["y"], rec["test"]["prob"])
            return (f"The paper-exact CNN trained on the same split and scored on the same test images (run "
                    f"`{rec['id']}`, record only: the 216 MB model is not shipped): accuracy {ci(m['accuracy'])}, "
                    f"AUC {ci(m['auc'])}.")
    return ("The paper-exact CNN has not been trained on this split here; on another leak-free split it scored 93.17% "
            "accuracy and AUC 0.960 (`../shared/reference/measurements.md`, Keras on an H100).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    here = Path(__file__).resolve().parent.parent
    ap.add_argument("--root", default=str(here / "trained_models"))
    ap.add_argument("--runs", default=str(here / "reports" / "runs"), help="where the leave-one-source-out runs are")
    args = ap.parse_args()
    root, runs_dir = Path(args.root), Path(args.runs)
    shipped = json.loads((root / "shipped.json").read_text())
    md = ["# Model card: shipped brain-tumour models", "",
          "**Not for clinical use.** These models are decision support for research and teaching; they are "
          "not a medical device and must not replace a radiologist's reading.", "",
          "Data: the six labelled sources of `../shared/data` (Br35H; the LGG segmentation data set in FLAIR, T1+Gd "
          "and T1, 110 patients; IXI T1, 42 healthy subjects in three planes; BraTS 2012 HG0015), read from there, "
          "never committed. Splits are group-aware: patients (from each source's `metadata.csv`; the three LGG "
          "sequences share theirs) and Br35H's near-duplicate groups never straddle train and test. The figures that "
          "matter for a new hospital are the leave-one-source-out ones in `reports/sources.md`, far below the "
          "in-source test figures here.", ""]
    recs = {}
    for kind in ("cnn", "transfer"):
        folder = root / shipped[kind]
        recs[kind] = json.loads((folder / "run.json").read_text())
        md += describe(kind, recs[kind], folder)
    held = {kind: held_out_run(recs[kind], runs_dir) for kind in recs}  # each reads every record in runs_dir
    md += ["## How they differ from the paper", "",
           "- The paper's from-scratch CNN flattens a 58x58x32 map into Dense(500): 54M parameters, over 200 MB. "
           "The shipped CNN keeps the paper's layers but adds one MaxPool before Flatten and may use a smaller input "
           "and a larger learning rate (see above), so it fits the 40 MB budget and trains in minutes on a CPU. "
           + paper_cnn_line(root),
           ("- The paper's transfer model puts a head on a frozen ImageNet ResNet50V2 (downloaded weights); the shipped "
            "one cuts an EfficientNet-Lite0 with converted ImageNet weights (`backbones/`) after block 10 and scores "
            "every 16-pixel cell of the slice, the image's answer being their smooth maximum; where an expert mask "
            "exists (LGG, BraTS) each cell is also trained to match it, so it learns where a tumour is, not only "
            "which source an image comes from. It sees {s}x{s} slices after {pre}, and "
            "trains on one random view of each image too (90/180-degree turns, flips, crops, gamma, contrast, bias "
            "field, blur, noise, resolution, JPEG).".format(s=recs["transfer"]["config"]["image_size"],
                                                           pre=PREPROCESS_WORDS.get(recs["transfer"]["config"]["preprocess"],
                                                                                    recs["transfer"]["config"]["preprocess"]))
            if recs["transfer"]["config"]["model"] == "patch" else
           "- The paper's transfer model uses ResNet50V2, whose ImageNet weights must be downloaded; the shipped one "
           "uses EfficientNet-Lite0 with converted ImageNet weights that ship in `backbones/`, and global average "
           "pooling before the paper's Dense(500) head; with `pooling multiscale` it pools the maps of seven depths "
           "(edges and textures as well as the last, most ImageNet-specific map) and standardises them, and with "
           "`mirror` it averages the feature map of the image and of its left-right mirror image."
           + (" Its head is also trained on blurred, noisy, low-resolution and JPEG-compressed copies of the "
              "training images (`--degrade-copies`), so that it holds up on images from other scanners' pipelines "
              "(`reports/generalisation.md`)." if recs["transfer"]["config"].get("degrade_copies") else "")), "",
           "## Known limits", "",
           "- Trained on six sources, but on a source it never saw the transfer model scores "
           + held_out_range(held["transfer"]) + ": it is not reliable on another hospital's "
           "scans. " + refusal_sentence(held["transfer"]) + " The "
           "CNN's recipe scores " + held_out_range(held["cnn"]) + " there (each at 0.5)."
           + operating_sentence("The transfer model", recs["transfer"], held["transfer"])
           + operating_sentence("The CNN", recs["cnn"], held["cnn"])
           + (" The degraded copies and the simulated scanners of `reports/generalisation.md` are of the same kinds, "
              "so the robustness measured there is to those kinds of degradation, not to real images from elsewhere."
              if recs["transfer"]["config"].get("degrade_copies") else ""),
           "- Low-grade gliomas on T1 and T1+Gd: the LGG labels come from masks drawn on FLAIR, and on the T1 "
           "sequences most of those tumours barely stand out from the tissue around them; held out, the model misses "
           "most of them (`reports/sources.md`, *How visible the missed tumours are*)." + position_sentence(recs["transfer"]),
           "- Axial slices only; no 3-D context; no tumour type or grade; not validated on children.",
           "- The labels are the data set's; no clinical ground truth was checked.", ""]
    (root / "README.md").write_text("\n".join(md))
    print(f"wrote {root / 'README.md'}")


if __name__ == "__main__":
    main()
