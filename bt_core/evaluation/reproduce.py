"""Reproduce the paper: both models, the paper's (leaky) random split and the leak-free group split.

``python -m bt_core reproduce --data DIR`` runs the full protocol (3-fold CV, ``--folds`` to change it;
final fit, test on 20%; 30 epochs, Adam 1e-4, batch 32) for each model and split, saves each run in the registry
(default ``trained_models/_reproduce``; a run already there for the same data, model, split, epochs
and seed is reused, so an interrupted reproduction resumes), and writes ``reproduction.md`` with
its PNG figures and ``reproduction.json`` into the report folder (default ``reports/``).
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import numpy as np

from bt_core import data, runs
from bt_core.evaluation import figures, metrics, stats
from bt_core.data import splits
from bt_core.models import training
from bt_core.errors import ConfigError

PAPER = {  # Jardim et al., test set (600 images) and Table 1 means
    "paper_cnn": {"accuracy": 0.9967, "sensitivity": 1.0, "specificity": 0.9934, "auc": 0.9994, "cv_mean": 0.9766},
    "transfer": {"accuracy": 0.98, "sensitivity": 0.9832, "specificity": 0.9769, "auc": 0.9951, "cv_mean": 0.9776},
}
PAPER_TABLE1 = {"paper_cnn": [0.9794, 0.9734, 0.9770], "transfer": [0.9826, 0.9778, 0.9725]}  # fold accuracies
LABELS = {"paper_cnn": "from-scratch CNN (paper)", "compact_cnn": "compact CNN", "transfer": "transfer"}


def run_id(model: str, split: str, cfg: training.TrainConfig, fingerprint: str) -> str:
    extra = f"-{cfg.backbone}" if model == "transfer" else ""
    extra += "" if cfg.precision == "float32" else f"-{cfg.precision}"
    extra += "" if cfg.folds == 3 else f"-f{cfg.folds}"
    return f"repro-{model}{extra}-{split}-e{cfg.epochs}-s{cfg.seed}-{fingerprint[:10]}"


def config_for(model: str, split: str, args) -> training.TrainConfig:
    cfg = training.TrainConfig(model=model, split=split, epochs=args.epochs, backbone=args.backbone, seed=42,
                               precision=args.precision, folds=getattr(args, "folds", 3))
    if model != "transfer":  # the from-scratch CNN's size and learning rate may be set apart
        cfg.image_size, cfg.head_pool, cfg.lr = args.cnn_image_size, args.cnn_head_pool, args.cnn_lr
    return cfg.validate()


def find_run(cfg: training.TrainConfig, fingerprint: str, roots) -> dict | None:
    """A finished cv run of exactly this config on exactly this data, in any of ``roots``."""
    want = cfg.to_dict()
    for root in roots:
        for summary in runs.list_runs(root):
            try:
                rec = runs.load_run(summary["dir"])
            except Exception:
                continue
            have = training.TrainConfig.from_dict(rec.get("config", {})).to_dict()
            if (rec.get("mode") == "cv" and have == want and rec.get("data", {}).get("fingerprint") == fingerprint
                    and summary.get("has_model")):
                return rec
    return None


def get_run(model: str, split: str, ds, args, out: Path):
    """Reuse a finished run of the same config and data (here or in the registry), or train one."""
    cfg = config_for(model, split, args)
    rid = run_id(model, split, cfg, ds.fingerprint)
    found = find_run(cfg, ds.fingerprint, [out, runs.default_root()])
    if found:
        print(f"== reusing {found['id']}", flush=True)
        return found
    print(f"== {rid}", flush=True)
    from bt_core.progress import progress_printer
    model_obj, record = training.run_protocol(cfg, ds, "cv", progress_printer(None))
    runs.save_run(record, model_obj, out, run_id=rid)
    return runs.load_run(out / rid)


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


def _ci(m: dict) -> str:
    return f"{_pct(m['value'])} ({_pct(m['low'])} to {_pct(m['high'])})"


def _pair_stats(a: dict, b: dict) -> dict:
    acc_a = [f["metrics"]["accuracy"] for f in a["folds"]]
    acc_b = [f["metrics"]["accuracy"] for f in b["folds"]]
    n_val = np.mean([len(f["val_idx"]) for f in a["folds"]])
    n_tr = np.mean([len(f["train_idx"]) for f in a["folds"]])
    if a["test"]["idx"] != b["test"]["idx"]:
        raise ConfigError("the two runs were not scored on the same test images")
    y = np.asarray(a["test"]["y"])
    pa, pb = np.asarray(a["test"]["prob"]), np.asarray(b["test"]["prob"])
    return {"paired_t": stats.paired_ttest(acc_a, acc_b),
            "corrected_t": stats.corrected_resampled_ttest(acc_a, acc_b, n_tr, n_val),
            "mcnemar": stats.mcnemar_test(y, pa >= 0.5, pb >= 0.5),
            "delong": stats.delong_test(y, pa, pb)}


def _gradcam_examples(records: dict, ds, report_dir: Path) -> list[str]:
    """Figures 6 and 7: a true positive and a true negative, both models' Grad-CAM."""
    from bt_core.explain import gradcam, overlay

    names = list(records)
    first = records[names[0]]
    y = np.asarray(first["test"]["y"])
    probs = np.stack([np.asarray(records[n]["test"]["prob"]) for n in names])
    lines = []
    for label, fig_name in ((1, "gradcam_tumour.png"), (0, "gradcam_no_tumour.png")):
        right = np.all((probs >= 0.5) == bool(label), axis=0) & (y == label)
        if not right.any():
            continue
        j = int(np.argmax(np.where(right, np.abs(probs - 0.5).sum(0), -1)))
        idx = first["test"]["idx"][j]
        img = ds.images[idx]
        overlays = {}
        for n in names:
            cfg = training.TrainConfig.from_dict(records[n]["config"])
            model = runs.load_model(records[n]["dir"])
            small = data.at_size(img[None], cfg.image_size)
            heat = gradcam.explain(model, data.as_batch(small, cfg.channels, cfg.preprocess))[0]
            overlays[f"{LABELS.get(n, n)} p={records[n]['test']['prob'][j]:.3f}"] = overlay.overlay(img, heat)
        what = "tumour" if label else "no tumour"
        figures.gradcam_grid(img, overlays, f"Grad-CAM, test image with {what}: {ds.paths[idx]}", report_dir / fig_name)
        lines.append(f"![Grad-CAM {what}]({fig_name})")
    return lines


def paper_exact_rows(results: dict) -> list[str]:
    """The paper-exact CNN scored on the same test images, when such a run is in the registry."""
    rows = []
    for summary in runs.list_runs():
        if summary.get("model") != "paper_cnn" or summary.get("split") not in results:
            continue
        rec = runs.load_run(summary["dir"])
        same = next(iter(results[rec["config"]["split"]].values()))["test"]["idx"] == rec["test"]["idx"]
        if same:
            m = rec["test"]["metrics"]
            rows.append(f"| {LABELS['paper_cnn']}, exact (240 px, 54M parameters; `{rec['id']}`, {rec['mode']}) | "
                        f"ours, {rec['config']['split']}, same test images | {_pct(m['accuracy'])} | {_pct(m['sensitivity'])} | "
                        f"{_pct(m['specificity'])} | {_pct(m['auc'])} | n/a |")
    return rows


def command_of(args) -> str:
    """The command as it was typed (``args.argv``, every option it named), else rebuilt from ``args``."""
    if getattr(args, "argv", None):
        return "python -m bt_core " + shlex.join(args.argv)
    return (f"python -m bt_core reproduce --data {args.data} --epochs {args.epochs} --models {' '.join(args.models)} "
            f"--splits {' '.join(args.splits)} --cnn-image-size {args.cnn_image_size} --cnn-head-pool "
            f"{args.cnn_head_pool} --cnn-lr {args.cnn_lr} --precision {args.precision} --report {args.report}"
            + (f" --out {args.out}" if args.out else ""))


def write_report(results: dict, ds, args, report_dir: Path, wall: float, audit: dict) -> Path:
    hw = next(iter(next(iter(results.values())).values()))["hardware"]
    train_min = sum(r["wall_time_s"] for d in results.values() for r in d.values()) / 60
    md = ["# Reproduction of Jardim et al. on Br35H", "",
          f"Command: `{command_of(args)}`  ",
          f"Machine: {hw.get('cpu_model') or hw.get('processor')} ({hw.get('cpus')} CPUs), Keras {hw.get('keras')} on {hw.get('backend')}, "
          f"devices {hw.get('devices')}; training time of the runs {train_min:.1f} min (each run's below; runs "
          f"already in the registry are reused), this command {wall / 60:.1f} min; {time.strftime('%Y-%m-%d')}.", "",
          f"Data: {len(ds)} images ({int(ds.labels.sum())} tumour). Near-duplicates (dHash distance <= 10): "
          f"{audit['near_pairs']} pairs, {audit['groups']} groups. The paper's random split puts "
          f"{audit['random_leak']} of {audit['test']} test images next to a near-duplicate in training "
          f"(**leaky**); the group split puts {audit['group_leak']}.", "",
          "Decision support research, not a diagnostic device.", "",
          "## The paper's numbers beside ours (test set, threshold 0.5)", "",
          "| model | split | accuracy | sensitivity | specificity | AUC | CV mean accuracy |", "|---|---|---|---|---|---|---|"]
    for model in args.models:
        if PAPER.get(model, PAPER.get("paper_cnn") if model == "compact_cnn" else None):
            p = PAPER.get(model) or PAPER["paper_cnn"]
            name = LABELS.get(model, model) if model in PAPER else LABELS["paper_cnn"]
            md.append(f"| {name} | paper (as published) | {_pct(p['accuracy'])} | "
                      f"{_pct(p['sensitivity'])} | {_pct(p['specificity'])} | {_pct(p['auc'])} | {_pct(p['cv_mean'])} |")
        for split in args.splits:
            r = results[split][model]
            m = r["test"]["metrics"]
            cv = np.mean([f["metrics"]["accuracy"] for f in r["folds"]])
            tag = "random (leaky)" if split == "random" else "group (leak-free)"
            md.append(f"| {LABELS.get(model, model)} | ours, {tag} | {_pct(m['accuracy'])} | {_pct(m['sensitivity'])} | "
                      f"{_pct(m['specificity'])} | {_pct(m['auc'])} | {_pct(cv)} |")
    md += paper_exact_rows(results)
    for split in args.splits:
        tag = "random split (the paper's; leaky)" if split == "random" else "group-aware split (leak-free)"
        md += ["", f"## {tag}", ""]
        for model in args.models:
            r = results[split][model]
            table = metrics.fold_table([f["metrics"] for f in r["folds"]])
            md += [f"### {LABELS.get(model, model)}: Table 1 (validation, per fold)", "",
                   "| | accuracy | sensitivity | specificity |", "|---|---|---|---|"]
            for name, row in table.iterrows():  # variance in %², as the paper's Table 1 gives it
                fmt = (lambda v: f"{1e4 * v:.3f} %²") if name == "Variance" else _pct
                md.append(f"| {name} | " + " | ".join(fmt(row[k]) for k in ("accuracy", "sensitivity", "specificity")) + " |")
            ci = metrics.metrics_with_ci(r["test"]["y"], r["test"]["prob"])
            md += ["", f"Test ({r['test']['metrics']['n']} images), 95% CI: accuracy {_ci(ci['accuracy'])}, "
                   f"sensitivity {_ci(ci['sensitivity'])}, specificity {_ci(ci['specificity'])}, AUC {_ci(ci['auc'])}. "
                   f"Training time {r['wall_time_s'] / 60:.1f} min, {r.get('params', 0):,} parameters.", ""]
            fig = figures.learning_curves(r, f"{LABELS.get(model, model)}, {tag}", report_dir / f"curves_{model}_{split}.png")
            md.append(f"![learning curves]({fig.name})")
        curves = {LABELS.get(m, m): (results[split][m]["test"]["y"], results[split][m]["test"]["prob"]) for m in args.models}
        md += ["", f"![ROC]({figures.roc_figure(curves, f'Test ROC, {tag}', report_dir / f'roc_{split}.png').name})",
               f"![metrics]({figures.metric_bars({LABELS.get(m, m): results[split][m]['test']['metrics'] for m in args.models}, f'Test metrics, {tag}', report_dir / f'bars_{split}.png').name})"]
        if len(args.models) == 2:
            a, b = (results[split][m] for m in args.models)
            s = _pair_stats(a, b)
            md += ["", f"Comparison of {LABELS.get(args.models[0])} and {LABELS.get(args.models[1])}:", "",
                   f"- paired t-test on fold accuracies (the paper's): T = {s['paired_t']['t']:.4f}, p = {s['paired_t']['p']:.4f}",
                   f"- Nadeau-Bengio corrected resampled t-test: T = {s['corrected_t']['t']:.4f}, p = {s['corrected_t']['p']:.4f}. "
                   + stats.interpret(s["corrected_t"]["p"], diff=s["corrected_t"]["mean_diff"],
                                     names=tuple(LABELS.get(m, m) for m in args.models)),
                   f"- McNemar on test decisions: statistic {s['mcnemar']['statistic']:.3f}, p = {s['mcnemar']['p']:.4f} "
                   f"(b = {s['mcnemar']['b']}, c = {s['mcnemar']['c']})",
                   f"- DeLong on test AUCs: {s['delong']['auc_a']:.4f} vs {s['delong']['auc_b']:.4f}, z = {s['delong']['z']:.3f}, "
                   f"p = {s['delong']['p']:.4f}"]
    t = stats.paired_ttest(PAPER_TABLE1["paper_cnn"], PAPER_TABLE1["transfer"])
    md += ["", f"The paper reports T = 0.3977 (p > 0.05) for its two models; the paired t-test on its own Table 1 "
           f"fold accuracies gives T = {t['t']:.4f}, p = {t['p']:.4f} (same conclusion, another statistic)."]
    if "group" in results:
        md += ["", "## Grad-CAM (group split, test images)", ""] + _gradcam_examples(results["group"], ds, report_dir)
    path = report_dir / "reproduction.md"
    path.write_text("\n".join(md) + "\n")
    return path


def main(args) -> int:
    for m in args.models:
        if m not in LABELS:
            raise ConfigError(f"unknown model {m!r}; choose from {', '.join(LABELS)}")
    t0 = time.perf_counter()
    out = Path(args.out) if args.out else runs.default_root() / "_reproduce"
    report_dir = Path(args.report)
    report_dir.mkdir(parents=True, exist_ok=True)
    ds = data.load_folder(args.data)
    bits = splits.dhash_bits(ds.images)
    groups = splits.near_duplicate_groups(bits=bits)
    summary = splits.duplicate_summary(bits)
    tr_r, te_r = splits.holdout(ds.labels, "random", seed=42)
    tr_g, te_g = splits.holdout(ds.labels, "group", groups, seed=42)
    audit = {**summary, "test": len(te_r), "random_leak": splits.leak_count(bits, tr_r, te_r),
             "group_leak": splits.leak_count(bits, tr_g, te_g)}
    results = {s: {m: get_run(m, s, ds, args, out) for m in args.models} for s in args.splits}
    path = write_report(results, ds, args, report_dir, time.perf_counter() - t0, audit)
    compact = {s: {m: {"run": r["id"], "folds": [f["metrics"] for f in r["folds"]], "test": r["test"]["metrics"],
                       "wall_time_s": r["wall_time_s"], "hardware": r["hardware"]} for m, r in d.items()}
               for s, d in results.items()}
    runs.write_json_atomic(report_dir / "reproduction.json", {"audit": audit, "results": compact})
    print(f"wrote {path}")
    return 0
