"""Write reports/sources.md: how the models do on sources they never saw, and on each source's own test part.

Reads saved runs only (nothing is trained here):

- ``--loso RUN ...``: leave-one-source-out runs (``python -m bt_core loso ...``), one per recipe: per
  held-out source accuracy, sensitivity and specificity where the class exists, AUC where both do,
  the abstention band fitted on the *other* families (share answered, accuracy on answered images),
  a risk-coverage curve, the shortcut checks (LGG slice position, IXI plane, BraTS sequence), and
  sensitivity by the tumour's size and by how much it stands out (``bt_core.evaluation.visibility``);
- ``--average RUN RUN [...]`` (repeatable): the mean probability of several leave-one-source-out runs
  of the same data, scored like one more run (an ensemble of their models, each trained as its run says);
- ``--runs RUN ...``: cv runs on all sources (the shipped models): per-source group-aware test figures
  (and sensitivity by tumour contrast), and the pointing game of Grad-CAM and Grad-CAM++ against the expert masks of their test images.

- ``--tests RUN ...``: more runs on all sources (cv or train), their test-part figures only.

Usage: python tools/sources_report.py --loso RUN [RUN ...] [--average RUN RUN ...] --runs RUN [RUN ...]
[--tests RUN ...] [--out reports/sources.md]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse
import shlex
import time

import numpy as np

from bt_core import runs
from bt_core.errors import BTError
from bt_core.evaluation import abstain, breakdown, held_out, metrics, records, visibility


BALANCE_FIX = "20261206-2010"  # run ids (their start time) from which the 'without LGG' fold was balanced


def pct(x) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def name_of(rec: dict) -> str:
    c = rec["config"]
    return rec.get("label") or (c["model"] + (f" ({c['backbone']})" if c["model"] in ("transfer", "patch") else ""))


def loso_section(rec: dict, fig_dir: Path) -> list[str]:
    held = rec["held_out"]
    y = np.concatenate([np.asarray(r["y"]) for r in held.values()])
    p = np.concatenate([np.asarray(r["prob"]) for r in held.values()])
    src = np.concatenate([np.asarray(r["source"]) for r in held.values()])
    fam = np.concatenate([[f] * len(r["y"]) for f, r in held.items()])
    check = abstain.held_out_check(y, p, src, fam, target=0.95)
    lines = [f"### {name_of(rec)} (`{rec['id']}`)", "",
             f"Command: `{rec.get('command', '')}`; {rec['wall_time_s'] / 60:.1f} min on "
             f"{rec['hardware'].get('cpu_model') or rec['hardware'].get('processor', '?')} ({rec['hardware'].get('cpus', '?')} CPUs, "
             f"{rec['hardware'].get('backend')}).", "",
             "*Best threshold's accuracy*: the highest accuracy any threshold reaches on the source, chosen on its "
             "own labels: an upper bound for every threshold rule, not a figure a user gets.", "",
             "| held-out family | source | n | accuracy | sensitivity | specificity | AUC | best threshold's accuracy "
             "| answered | accuracy on answered |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f, r in held.items():
        for s, m in r["per_source"].items():
            at = np.asarray(r["source"]) == s
            cls = metrics.defined_metrics(np.asarray(r["y"])[at])
            best = metrics.best_threshold_accuracy(np.asarray(r["y"])[at], np.asarray(r["prob"])[at])
            a = check[f]["per_source"][s]
            lines.append(f"| {f} | {s} | {m['n']} | {pct(m['accuracy'])} | "
                         f"{pct(m['sensitivity']) if 'sensitivity' in cls else '–'} | "
                         f"{pct(m['specificity']) if 'specificity' in cls else '–'} | "
                         f"{pct(m['auc']) if 'auc' in cls else '–'} | {pct(best) if 'auc' in cls else '–'} | "
                         f"{pct(a['answered'])} | {pct(a['accuracy_answered'])} |")
    lines += ["", "Abstention band per held-out family (fitted on the other families' leave-one-source-out "
              "predictions only; answered when the probability is at or below *low* or at or above *high*; a band "
              f"counts as reached only if it also answers at least {pct(abstain.DEFAULT_MIN_COVERAGE)} of every "
              "fitting source). *Answered when fitted* is the mean share answered on the fitting sources:", "",
              "| held-out family | target on every fitting source | reached | answered when fitted | low | high "
              "| answered (held out) | accuracy on answered (held out) |",
              "|---|---:|---|---:|---:|---:|---:|---:|"]
    for f, c in check.items():
        b = c["band"]
        if b is None:
            lines.append(f"| {f} | – | no other family in this run to fit it on | – | – | – | – | – |")
            continue
        lines.append(f"| {f} | {pct(b['target'])} | {'yes' if b.get('met', True) else 'no: no band reaches it'} | "
                     f"{pct(b['coverage']) if b.get('met', True) else '–'} | {b['low']:.2f} | {b['high']:.2f} | {pct(c['answered'])} | {pct(c['accuracy_answered'])} |")
    lines += checks_lines(rec)
    lines += ["", "Risk-coverage (accuracy when answering only the most confident share of each held-out family):", "",
              "| held-out family | " + " | ".join(f"{int(c * 100)}%" for c in (0.25, 0.5, 0.75, 1.0)) + " |",
              "|---|" + "---:|" * 4]
    for f, r in held.items():
        curve = abstain.risk_coverage(r["y"], r["prob"], points=101)
        pick = [min(curve, key=lambda t: abs(t[0] - c))[1] for c in (0.25, 0.5, 0.75, 1.0)]
        lines.append(f"| {f} | " + " | ".join(pct(v) for v in pick) + " |")
    path = _risk_coverage_png(rec, fig_dir)
    lines += ["", f"![risk-coverage]({path.name})", ""]
    idx, ys, ps, ss = ([v for r in held.values() for v in r[k]] for k in ("idx", "y", "prob", "source"))
    family_rows = breakdown.rows_by_family(rec, idx, ys, ps, ss)  # the held-out keys are the families
    lines += shortcut_lines(family_rows) + size_lines(family_rows)
    return lines + contrast_lines(rec, idx, ys, ps, ss, "held-out")


def contrast_lines(rec: dict, idx, y, prob, source, what: str) -> list[str]:
    """Sensitivity on the masked sources' tumour slices by how much the tumour stands out in its own slice
    (:func:`bt_core.evaluation.visibility.tumour_contrast`)."""
    rows = visibility.run_detection_by_contrast(rec, idx, y, prob, source)
    return [f"How visible the missed tumours are ({what} tumour slices of the masked sources by their *tumour contrast*: "
            "|mean inside the expert mask - mean of a 6-pixel ring around it| / the head's standard deviation, in the "
            "slice itself; the LGG masks outline the FLAIR abnormality, also on the T1 sequences; "
            "`bt_core.evaluation.visibility`; sensitivity at 0.5):", "",
            "| source | tumour contrast | n | share of its tumour slices | sensitivity |", "|---|---|---:|---:|---:|"] + [
        f"| {r['source']} | {r['bin']} | {r['n']} | {pct(r['share'])} | {pct(r['sensitivity'])} |" for r in rows] + [""] if rows else []


def checks_lines(rec: dict) -> list[str]:
    """The app's refusal checks fitted without each held-out family (``python -m bt_core loso-checks``),
    from :func:`bt_core.evaluation.held_out.checks_table` (the table the Unseen sources page shows)."""
    table = held_out.checks_table(rec)
    if table is None:
        return []
    lines = ["", "The app's refusal checks (out-of-distribution and plane), fitted on the other families only "
             f"(`python -m bt_core loso-checks reports/runs/{rec['id']}`, quantile {rec['checks']['quantile']}): share refused "
             "and accuracy at 0.5 on the images left, against the accuracy on all. *Plane* is – where the other "
             "families hold one plane only, so no plane detector could be fitted:", "",
             "| held-out family | source | refused | of which OOD | of which plane | accuracy on all | accuracy on accepted |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        lines.append(f"| {r[1]} | {r[0]} | " + " | ".join(pct(v) for v in r[2:]) + " |")
    return lines


def comparison_section(recs: list[dict]) -> list[str]:
    """One row per held-out source, one column per leave-one-source-out run: the ablation at a glance."""
    names = [f"{name_of(r)} (`{r['id']}`)" for r in recs]
    lines = ["## The recipes side by side (accuracy on the held-out source; AUC where both classes exist)", "",
             "| held-out source | " + " | ".join(names) + " |", "|---|" + "---:|" * len(recs)]
    order = dict.fromkeys(s for r in recs for h in r["held_out"].values() for s in h["per_source"])
    for s in order:
        cells = []
        for r in recs:
            m = next((h["per_source"][s] for h in r["held_out"].values() if s in h["per_source"]), None)
            auc = m.get("auc") if m else None
            cells.append("–" if m is None else pct(m["accuracy"]) + (f" ({auc:.3f})" if auc is not None and np.isfinite(auc) else ""))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines + [""]


def _risk_coverage_png(rec: dict, fig_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=110)
    for f, r in rec["held_out"].items():
        c = np.asarray(abstain.risk_coverage(r["y"], r["prob"], points=51))
        ax.plot(c[:, 0], c[:, 1], label=f"held-out {f}")
    ax.set(xlabel="share answered", ylabel="accuracy on answered", xlim=(0, 1), ylim=(0.4, 1.0),
           title=f"Risk-coverage, {name_of(rec)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    path = fig_dir / f"risk_coverage_{rec['id']}.png"
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def size_lines(family_rows: dict[str, list[tuple]]) -> list[str]:
    """Sensitivity on held-out tumour slices by the expert mask's size (``mask_px``), per source."""
    rows = breakdown.size_splits(family_rows)
    return ["Where the missed tumours are (held-out tumour slices by the size of the expert mask, in pixels of the "
            "source's own slice; sensitivity at 0.5):", "", "| source | tumour pixels | n | sensitivity |", "|---|---|---:|---:|"] + [
        f"| {r['source']} | {r['bin']} | {r['n']} | {pct(r['sensitivity'])} |" for r in rows] + [""] if rows else []


def shortcut_lines(family_rows: dict[str, list[tuple]],
                   title: str = "Shortcut checks (held-out predictions split by what a shortcut would use):",
                   family: str = "held-out family") -> list[str]:
    """Figures split by what a shortcut would use: slice position (LGG), plane (IXI), sequence (BraTS)."""
    return [title, "", f"| {family} | split by | part | n | accuracy |", "|---|---|---|---:|---:|"] + [
        f"| {r['family']} | {r['split']} | {r['part']} | {r['n']} | {pct(r['accuracy'])} |"
        for r in breakdown.shortcut_splits(family_rows)] + [""]


def shipped_section(rec: dict) -> list[str]:
    t = rec["test"]
    y, p, src = np.asarray(t["y"]), np.asarray(t["prob"]), np.asarray(t["source"])
    op = rec.get("operating_point")
    thr = float((op or {}).get("threshold", 0.5))
    at = f"Threshold 0.5 and, in brackets, the operating point {thr:.3f}." if op else \
        "Threshold 0.5 (no operating point was calibrated for this run)."
    lines = [f"### {name_of(rec)}: group-aware test part of every source (`{rec['id']}`)", "",
             f"Command: `{rec.get('command', '')}`; {rec.get('wall_time_s', 0) / 60:.1f} min. Test part: 20% of each "
             f"source's patients (Br35H: of its near-duplicate groups), never trained on. {at}", "",
             "| source | n | accuracy | sensitivity | specificity | AUC |", "|---|---:|---:|---:|---:|---:|"]
    for s in dict.fromkeys(src.tolist()):
        m, mo = (metrics.binary_metrics(y[src == s], p[src == s], th) for th in (0.5, thr))
        cls = metrics.defined_metrics(y[src == s])
        cell = lambda k: (f"{pct(m[k])} ({pct(mo[k])})" if op else pct(m[k])) if k in cls else "–"  # noqa: E731
        lines.append(f"| {s} | {m['n']} | {cell('accuracy')} | {cell('sensitivity')} | {cell('specificity')} | "
                     f"{pct(m['auc']) if 'auc' in cls else '–'} |")
    shortcuts = shortcut_lines(breakdown.rows_by_family(rec, t["idx"], y, p, src),
                               "Shortcut checks on the test part (LGG's no-tumour slices in the middle half of a volume "
                               "lie next to the tumour, so they are harder anyway; a model that learned slice positions "
                               "loses far more there):", "family")
    return lines + [""] + shortcuts + contrast_lines(rec, t["idx"], y, p, src, "test-part")


def pointing_section(recs: list[dict], limit: int) -> list[str]:
    from bt_core.data import sources
    from bt_core.evaluation.posthoc import load_run_data
    from bt_core.explain import gradcam
    from bt_core.explain.pointing import pointing
    from bt_core.serving.inference import Predictor

    lines = ["## Heatmaps against the expert masks", "",
             f"Tumour test images of the masked sources (at most {limit} per source, the first by index); "
             "a *hit* when the heatmap's peak lies inside the mask, *energy* the share of the heatmap inside it; "
             "a uniform map would score the mask's area share (chance).", "",
             "| model | method | source | n | hits | energy inside | chance |", "|---|---|---|---:|---:|---:|---:|"]
    for rec in recs:
        ds = load_run_data(rec)
        specs = [sources.SourceSpec(s["root"], s["name"], s["family"]) for s in rec["data"]["sources"]]
        masks, has = sources.load_masks(ds, specs)
        pred = Predictor(rec["id"])
        test = np.asarray(rec["test"]["idx"])
        src = ds.source_of()
        for s in dict.fromkeys(src[test].tolist()):
            idx = [i for i in test if src[i] == s and ds.labels[i] == 1 and has[i] and masks[i].any()][:limit]
            if not idx:
                continue
            x = pred.batch(list(ds.images[idx]))
            for method in ("gradcam", "gradcam++"):
                heat = gradcam.explain(pred.model, x, method=method)
                r = pointing(heat, masks[idx])
                lines.append(f"| {name_of(rec)} | {method} | {s} | {r['n']} | {pct(r['hit_rate'])} | "
                             f"{pct(r['energy_inside'])} | {pct(r['chance_hit'])} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loso", nargs="*", default=[], metavar="RUN")
    ap.add_argument("--average", nargs="+", action="append", default=[], metavar="RUN",
                    help="leave-one-source-out runs whose mean probability is scored as one more run (repeatable)")
    ap.add_argument("--runs", nargs="*", default=[], metavar="RUN")
    ap.add_argument("--tests", nargs="*", default=[], metavar="RUN",
                    help="more cv or train runs on all sources: their test-part figures only (no heatmaps)")
    ap.add_argument("--pointing-limit", type=int, default=150)
    ap.add_argument("--out", default="reports/sources.md")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        lo = [runs.load_run(r) for r in a.loso]
        lo += [records.mean_of_runs([runs.load_run(r) for r in group]) for group in a.average]
        sh = [runs.load_run(r) for r in a.runs]
        more = [runs.load_run(r) for r in a.tests]
    except BTError as exc:  # a missing run, or runs that cannot be averaged: one line, nothing written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = ["# Sources: the models on scans from sources they never saw", "",
             f"Written by `python tools/sources_report.py {shlex.join(sys.argv[1:] if argv is None else argv)}` on "
             f"{time.strftime('%Y-%m-%d')} from the saved runs it names (each run's own command is given). Data: the six "
             "labelled sources of `../shared/data` (Br35H; LGG FLAIR, T1+Gd and T1, one family; IXI T1, healthy; "
             "BraTS 2012 HG0015). Decision support, not a diagnosis.", "",
             "## Leave-one-source-out (the headline protocol)", "",
             "Each family is held out in turn: the model is trained on every image of the other families and scored on "
             "all images of the held-out one. The LGG family's three sequences are held out together (same patients).", "",
             f"Runs made before `{BALANCE_FIX}` trained their *without LGG* fold without the per-source balance they "
             "asked for: that training set (8932 rows) is smaller than an epoch's 12000 draws, and the draws took every "
             "row once (fixed in commit d0ed9b7). Their other folds are unaffected: `20261206-204324` is the 128 px "
             "recipe run again after the fix, and its Br35H, IXI and BraTS folds are identical to `20261206-174956`'s.", ""]
    if len(lo) > 1:
        lines += comparison_section(lo)
    for rec in lo:
        lines += loso_section(rec, out.parent)
    if sh or more:
        lines += ["## In-source test (group-aware)", ""]
        for rec in sh + more:
            lines += shipped_section(rec)
        lines += pointing_section(sh, a.pointing_limit) if sh else []
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
