"""Copy a handful of real, licence-compatible slices into examples/ for demos, with their true labels.

Only sources whose licence allows redistribution with attribution are used: IXI (CC BY-SA 3.0) and the
LGG segmentation data set (Buda et al. 2019, from TCGA-LGG on TCIA; the Kaggle data set's terms,
treated here as CC BY-NC-SA 4.0: non-commercial, share-alike, cite). Br35H (Kaggle terms) and BraTS
(challenge terms) are not redistributed. Slices are drawn with a fixed seed from the *test part* of the
six-source group-aware split of the shipped transfer run (``--run``, default the shipped one), so
the shipped models never trained on them, and from the middle half of each volume so that they show the brain. LGG tumour
slices keep their expert mask (``examples/masks/``) for the outline beside the heatmap.

Usage: python tools/pick_examples.py [--run RUN] [--data ../shared/data] [--out examples] [--seed 0]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, no install

import argparse
import shutil

import numpy as np
from PIL import Image

from bt_core import runs
from bt_core.data import sources

SOURCES = ["br35h", "lgg_flair", "lgg_t1c", "lgg_t1pre", "ixi_t1", "brats2012_hg0015"]
LICENCE = {"lgg": "CC BY-NC-SA 4.0 (LGG segmentation data set, Buda et al. 2019; TCGA-LGG, TCIA)",
           "ixi": "CC BY-SA 3.0 (IXI data set, brain-development.org)"}
# (source, label, how many, metadata filter)
PLAN = [("lgg_flair", 1, 2, {}), ("lgg_t1c", 1, 1, {}), ("lgg_t1pre", 1, 1, {}),
        ("lgg_flair", 0, 1, {}), ("lgg_t1c", 0, 1, {}),
        ("ixi_t1", 0, 3, {"plane": "ax"}), ("ixi_t1", 0, 1, {"plane": "cor"}), ("ixi_t1", 0, 1, {"plane": "sag"})]
SEQ = {"lgg_flair": "FLAIR", "lgg_t1c": "T1 after contrast", "lgg_t1pre": "T1 before contrast", "ixi_t1": "T1"}
PLANE = {"ax": "axial", "cor": "coronal", "sag": "sagittal"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "examples"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default=None, help="the run whose test part the examples come from (default: shipped transfer)")
    a = ap.parse_args(argv)
    specs = sources.specs_from([f"{a.data}/{s}" for s in SOURCES])
    ds = sources.load_sources(specs)
    rec = runs.load_run(a.run or runs.shipped()["transfer"])
    test_paths = {rec["data"]["paths"][i] for i in rec["test"]["idx"]}
    test = np.asarray([i for i, p in enumerate(ds.paths) if p in test_paths])
    rng = np.random.default_rng(a.seed)
    out = Path(a.out)
    for old in list(out.glob("*.png")) + list((out / "masks").glob("*.png")):
        old.unlink()
    (out / "masks").mkdir(parents=True, exist_ok=True)
    roots = {s.name: Path(s.path) for s in specs}
    src, rows = ds.source_of(), []
    span = {}
    for i in range(len(ds)):
        if ds.meta.get("slice", [""] * len(ds))[i]:
            g = ds.groups[i]
            span.setdefault((src[i], g), []).append(int(ds.meta["slice"][i]))
    for name, label, k, flt in PLAN:
        cand = []
        for i in test:
            if src[i] != name or ds.labels[i] != label:
                continue
            if any(ds.meta.get(c, [""] * len(ds))[i] != v for c, v in flt.items()):
                continue
            sl = span.get((name, ds.groups[i]), [0])
            pos = (int(ds.meta["slice"][i]) - min(sl)) / max(1, max(sl) - min(sl))
            if not 0.3 <= pos <= 0.7:
                continue
            if label == 1 and int(ds.meta.get("mask_px", ["0"] * len(ds))[i] or 0) < 800:
                continue  # a tumour a student can see
            cand.append(i)
        for i in rng.choice(cand, size=min(k, len(cand)), replace=False):
            rel = ds.paths[i].split("/", 1)[1]
            stem = Path(rel).stem
            fname = f"{'tumour' if label else 'no_tumour'}_{name}_{stem}.png"
            Image.open(roots[name] / rel).convert("L").save(out / fname)
            mask = roots[name] / "masks" / f"{stem}.png"
            if label and mask.is_file():
                shutil.copyfile(mask, out / "masks" / fname)
            fam = sources.family_of(name)
            plane = PLANE.get(ds.meta.get("plane", [""] * len(ds))[i], "axial")
            rows.append((fname, "tumour" if label else "no tumour", name, SEQ[name], plane, ds.groups[i].split(":", 1)[1],
                         LICENCE[fam], "yes" if label and mask.is_file() else "–"))
    lines = ["# Example slices (real, for demos and teaching)", "",
             f"{len(rows)} real MRI slices from two sources whose licences allow redistribution with attribution, picked by "
             "`python tools/pick_examples.py` (seeded) from the **test part** of the shipped models' six-source "
             "group-aware split, so the shipped models never trained on these patients. The true label is the data "
             "set's (LGG: from the expert tumour mask of the slice; IXI: healthy volunteers). A teaching demo shows "
             "right and wrong answers: compare each model's answer with the label below.", "",
             "| file | true label | source | sequence | plane | patient / subject | licence | expert mask |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| `{r[0]}` | {r[1]} | `{r[2]}` | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {r[7]} |" for r in rows]
    lines += ["", "**Sources and licences.**", "",
              "- LGG: Buda M., Saha A., Mazurowski M. A., *Association of genomic subtypes of lower-grade gliomas with "
              "shape features automatically extracted by a deep learning algorithm*, Computers in Biology and Medicine "
              "109 (2019); images from The Cancer Genome Atlas Low Grade Glioma collection (TCGA-LGG) of The Cancer "
              "Imaging Archive (Clark et al., J Digit Imaging 2013). Redistributed here for non-commercial research and "
              "teaching under CC BY-NC-SA 4.0 terms, with this attribution; the masks in `masks/` are the data set's "
              "expert segmentations (255 = tumour).",
              "- IXI: the IXI data set (Imperial College London, brain-development.org), Hammersmith Hospital, Philips "
              "3T, CC BY-SA 3.0; slices resampled to JPEG by the project's data preparation, saved here as PNG.",
              "", "Br35H (Kaggle terms) and BraTS 2012 (challenge terms) slices are not redistributed.", ""]
    (out / "README.md").write_text("\n".join(lines))
    import csv

    with open(out / "labels.csv", "w", newline="") as fh:  # read by the Check slices page
        w = csv.writer(fh)
        w.writerow(["file", "label", "source", "sequence", "plane", "licence"])
        w.writerows([(r[0], r[1], r[2], r[3], r[4], r[6]) for r in rows])
    print(f"wrote {len(rows)} examples and {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
