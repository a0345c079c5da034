"""The floor for training the paper-exact CNN on a CPU: arithmetic and memory traffic, and what 45 min needs.

Counts (no TensorFlow; shapes as in ``bt_core.models.networks.paper_cnn``: 240x240x1 -> Rescaling ->
Conv(32, 3, valid, ReLU) -> MaxPool(2) -> Conv(32, 3, valid, ReLU) -> MaxPool(2) -> Dropout -> Flatten ->
Dense(500, ReLU) -> Dense(1) -> sigmoid), per image and per training step of ``--batch`` images:

- FLOPs: 2 per multiply-add; training = forward + gradient w.r.t. weights + w.r.t. inputs (conv1 has no
  input gradient), elementwise layers left out (under 1%);
- memory traffic in float32: every activation written once and read once forward, and backward each saved
  activation read, each gradient written and read (about 2x forward); the Dense(500) weight (215 MB) read
  forward and backward, its gradient written, and Adam reading weight, gradient and both moments and writing
  weight and moments (7 passes): 10 passes of 215 MB per step, shared by the batch;
- the protocol: ``epochs x (folds x fold_train + final_train)`` training images and
  ``epochs x final_train + final_train + test`` evaluated ones (the validation thirds every epoch, the
  out-of-fold and test predictions), 3000 images, 20% test, 3 folds, 30 epochs: 216,000 and 75,000;
- with ``--measure``: this machine's numpy float32 matmul GFLOP/s (2048^2, all cores) and copy bandwidth
  (256 MiB arrays), a few seconds; the 1-minute load average is printed with them.

``python bench/paper_cnn_floor.py --measure`` prints one markdown table.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

MB = 1e6


def layer_counts(size: int = 240, filters: int = 32, dense: int = 500):
    """-> (rows of (layer, output shape, forward MFLOP, training MFLOP, output MB), dense weight count)."""
    c1 = size - 2
    p1 = c1 // 2
    c2 = p1 - 2
    p2 = c2 // 2
    flat = p2 * p2 * filters
    rows = []
    f1 = 2 * c1 * c1 * filters * 9 * 1
    rows.append(("conv1", (c1, c1, filters), f1, 2 * f1, c1 * c1 * filters * 4 / MB))  # no input gradient
    rows.append(("pool1", (p1, p1, filters), 0, 0, p1 * p1 * filters * 4 / MB))
    f2 = 2 * c2 * c2 * filters * 9 * filters
    rows.append(("conv2", (c2, c2, filters), f2, 3 * f2, c2 * c2 * filters * 4 / MB))
    rows.append(("pool2 + dropout", (p2, p2, filters), 0, 0, 2 * flat * 4 / MB))
    f3 = 2 * flat * dense
    rows.append(("dense500", (dense,), f3, 3 * f3, dense * 4 / MB))
    rows.append(("dense1", (1,), 2 * dense, 6 * dense, 4 / MB))
    return rows, flat * dense + dense


def measure(seconds: float = 1.5) -> tuple[float, float]:
    """-> (numpy float32 matmul GFLOP/s, copy GB/s counting read + write)."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), np.float32)
    a @ a
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ a
        n += 1
    gflops = n * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9
    src = np.ones(64 * 2**20, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(dst, src)
        n += 1
    gbs = n * 2 * src.nbytes / (time.perf_counter() - t0) / 1e9
    return gflops, gbs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image-size", type=int, default=240)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--minutes", type=float, default=45)
    p.add_argument("--fit-rates", default="45,63", help="measured fit images/s (bench/RESULTS.md)")
    p.add_argument("--val-rate", type=float, default=235, help="measured validation-pass images/s")
    p.add_argument("--measure", action="store_true", help="also time numpy matmul and memory copy here")
    a = p.parse_args(argv)

    rows, dense_w = layer_counts(a.image_size)
    fwd = sum(r[2] for r in rows)
    train = sum(r[3] for r in rows)
    act_fwd = a.image_size**2 * 4 / MB + 2 * sum(r[4] for r in rows)  # every tensor written once, read once
    act_train = 3 * act_fwd                                               # + backward, about twice forward
    w_mb = dense_w * 4 / MB
    w_step = 10 * w_mb                                                    # fwd, bwd, dW, Adam 7 passes
    per_image = act_train + w_step / a.batch
    final = round(a.images * (1 - a.test_size))
    fold_train = final * (a.folds - 1) / a.folds
    trained = a.epochs * (a.folds * fold_train + final)
    evaluated = a.epochs * final + final + (a.images - final)
    budget = a.minutes * 60 - evaluated / a.val_rate
    need = trained / budget
    rates = [float(r) for r in a.fit_rates.split(",")]

    out = ["| measure | value | unit |", "| --- | ---: | --- |"]
    for name, shape, f, t, mb in rows:
        out.append(f"| {name} {shape}: forward / training | {f / 1e6:.1f} / {t / 1e6:.1f} | MFLOP per image |")
    out += [f"| forward, whole network | {fwd / 1e9:.3f} | GFLOP per image |",
            f"| training (forward + both gradients) | {train / 1e9:.3f} | GFLOP per image |",
            f"| Dense(500) weight | {dense_w:,} ({w_mb:.0f} MB) | weights (float32) |",
            f"| activation traffic, training | {act_train:.0f} | MB per image |",
            f"| Dense weight + gradient + Adam traffic | {w_step / 1000:.2f} GB per step = {w_step / a.batch:.0f} | "
            f"MB per image (batch {a.batch}) |",
            f"| memory traffic, training | {per_image:.0f} | MB per image |",
            f"| protocol: images trained / evaluated | {trained:,.0f} / {evaluated:,.0f} | images |",
            f"| evaluated part at {a.val_rate:g} images/s | {evaluated / a.val_rate / 60:.1f} | min |",
            f"| needed for {a.minutes:g} min | {need:.1f} | training images/s |",
            f"| ... that is | {need * train / 1e9:.0f} GFLOP/s and {need * per_image / 1000:.1f} GB/s | sustained |"]
    for r in rates:
        out.append(f"| measured fit {r:g} images/s: arithmetic, traffic, protocol | {r * train / 1e9:.0f} GFLOP/s, "
                   f"{r * per_image / 1000:.1f} GB/s, {(trained / r + evaluated / a.val_rate) / 60:.0f} min | |")
    if a.measure:
        gflops, gbs = measure()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        out += [f"| numpy float32 matmul here | {gflops:.0f} | GFLOP/s (load average {load:.2f}) |",
                f"| numpy copy here (read + write) | {gbs:.1f} | GB/s |",
                f"| floor at these rates: arithmetic, traffic | {train / (gflops * 1e9) * 1000:.1f}, "
                f"{per_image / (gbs * 1000) * 1000:.1f} | ms per image |"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
