"""Write the dashboard's example slices: ``examples/*.png`` (240x240 greyscale) and ``examples/README.md``.

Source: axial slices of the ICBM 2009a nonlinear symmetric T1 template (an average of 152 healthy
adult brains), the file ``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`` that ships inside the
PyPI wheel of ``nilearn`` (read with ``nibabel``; nilearn itself is not imported). Two slices are left
as they are ("normal"); two get a *synthetic* lesion (a bright core with an irregular edge in a
darker halo), for demonstrating the dashboard only: they are not real tumours and not patient data.

``skimage.data.brain()`` (the UNC volume-rendering test data; its docstring states no licence) was
the first choice, but it is not in the scikit-image wheel: it is downloaded on first use, which
offline machines cannot do.

Usage: ``pip install -r tools/requirements-examples.txt && python tools/make_examples.py [--out examples]``.
Deterministic: same template file and ``--seed`` -> the same PNG bytes.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

TEMPLATE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
SIZE = 240
# (file name, axial slice index in the 1 mm template (z = index - 72 mm in MNI space), lesion or None)
# lesion = (row, column, radius in pixels, grey level of its core), in the 240x240 output image.
SLICES = [
    ("normal_1.png", 95, None),
    ("normal_2.png", 112, None),
    ("synthetic_lesion_1.png", 100, (80, 150, 15, 250)),
    ("synthetic_lesion_2.png", 118, (150, 82, 17, 240)),
]

README = """# Example slices (demo only)

Four 240x240 greyscale PNG slices for trying the dashboard without data of your own, written by
`tools/make_examples.py` (run it again to regenerate them byte for byte). Axial, anterior at the
top, the patient's right on the image's left (radiological convention).

| file | what it is |
| --- | --- |
{rows}

**Source.** Axial slices of the ICBM 2009a nonlinear symmetric T1-weighted template
(`mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz`), an average of MRI scans of 152 healthy
adults, as shipped inside the PyPI package `nilearn` 0.14.1 (the package is BSD-3-Clause; its
description of this file says "License: unknown"). The template's own terms, as published by the
McConnell Brain Imaging Centre with the ICBM 2009 atlases, allow use, copying, modification and
distribution for any purpose without fee provided the copyright notice is kept: *Copyright (C)
1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
University* (provided "as is", without warranty). These terms were recalled, not re-read, when
these files were made: check them before redistributing outside this repository. References:
V.S. Fonov et al., "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage
54(1), 2011; V.S. Fonov et al., "Unbiased nonlinear average age-appropriate brain templates from
birth to adulthood", NeuroImage 47(S1), 2009; D.L. Collins et al., "ANIMAL+INSECT: Improved
Cortical Structure Segmentation", IPMI 1999.

**The lesions are synthetic.** `synthetic_lesion_*.png` are the template with a bright core in a
darker halo painted on by the script. They are not tumours, not patient data, and a model's answer
on them says nothing about real scans. A template is an average, smoother than any one scan, so
a model trained on Br35H may find even the "normal" slices unusual.

`skimage.data.brain()` was considered first. Its docstring gives the provenance ("Subset of data
from the University of North Carolina Volume Rendering Test Data Set", full set at
graphics.stanford.edu/data/voldata) but no licence, and its file is not inside the scikit-image
package: it is downloaded on first use (needs `pooch` and network), which is not possible offline.
"""


def template_path() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nilearn is not installed: pip install -r tools/requirements-examples.txt")
    path = Path(list(spec.submodule_search_locations)[0]) / TEMPLATE
    if not path.is_file():
        raise SystemExit(f"template not found in the nilearn package: {path}")
    return path


def axial_slice(volume: np.ndarray, z: int) -> np.ndarray:
    """One axial slice of a RAS volume as a picture: anterior up, patient's right on the image's left
    (the radiological convention), cropped to the head, 240x240 uint8."""
    sl = np.fliplr(np.rot90(volume[:, :, z]))  # (x, y) -> rows anterior..posterior, columns right..left
    rows, cols = np.nonzero(sl > 10)  # crop to the brain with a 12% margin, as a square
    centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    half = int(max(np.ptp(rows), np.ptp(cols)) * 0.56) + 1
    r0, c0 = int(centre[0]), int(centre[1])  # after padding by ``half``, the crop starts here
    sl = np.pad(sl, half)[r0:r0 + 2 * half, c0:c0 + 2 * half]
    return np.asarray(Image.fromarray(sl.astype(np.uint8)).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


def add_lesion(img: np.ndarray, row: int, col: int, radius: float, peak: float, seed: int) -> np.ndarray:
    """A synthetic lesion: a bright core of grey level ``peak`` with an irregular edge, in a darker halo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]].astype(np.float64)
    angle = np.arctan2(yy - row, xx - col)
    wobble = 1.0 + 0.12 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi)) + 0.06 * np.sin(5 * angle)
    dist = np.hypot(yy - row, xx - col) / (radius * wobble)
    core = 1.0 / (1.0 + np.exp((dist - 0.8) / 0.08))  # ~1 inside, ~0 outside, soft edge
    halo = np.exp(-0.5 * ((dist - 1.25) / 0.3) ** 2) * (img > 10)
    base = img.astype(np.float64) * (1.0 - 0.35 * halo)  # darker surrounding oedema-like zone
    value = base * (1 - core) + peak * core
    noise = rng.normal(0, 4, img.shape) * core
    return np.clip(value + noise, 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "examples"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(template_path()))
    volume = np.asarray(img.dataobj, dtype=np.float64)
    volume = np.clip(volume / np.percentile(volume, 99.8) * 200, 0, 255)  # white matter ~190, not saturated
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, z, lesion) in enumerate(SLICES):
        pic = axial_slice(volume, z)
        if lesion:
            pic = add_lesion(pic, *lesion, seed=args.seed + i)
        buf = io.BytesIO()
        Image.fromarray(pic).save(buf, format="PNG", optimize=True)
        (out / name).write_bytes(buf.getvalue())
        what = "template slice with a **synthetic** bright lesion" if lesion else "template slice, no lesion"
        rows.append(f"| `{name}` | axial slice z = {z - 72:+d} mm (MNI), {what} |")
        print(f"{out / name}: {len(buf.getvalue()) / 1024:.1f} KB")
    (out / "README.md").write_text(README.format(rows="\n".join(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
