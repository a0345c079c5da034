#!/usr/bin/env python
"""Where the paper-exact CNN's training time goes on this machine: prints one markdown table.

    .venv/bin/python bench/paper_cnn_profile.py [--rounds 2] [--images 320]

Rows (all on random 240x240 images, batch 32, Keras ``fit`` with Adam 1e-4 unless said):
- ms per batch of ``fit`` for the paper's layers cut after conv1+pool1, after conv2+pool2, and whole;
  the differences are what each part costs; the whole network again with XLA (``jit_compile=True``) and
  under the ``mixed_bfloat16`` policy (bfloat16 compute, AMX on CPUs that have it);
- ms per update of Adam on a 107648 x 500 weight (the Dense layer), Keras' Adam against TensorFlow's
  fused ``ResourceApplyAdam`` kernel (TensorFlow backend only);
- float32 matmul GFLOP/s of numpy on all cores, for scale.
Models are built and warmed up first, then timed in interleaved rounds, because this 2-core virtual
machine changes speed from minute to minute; compare rows of the same round.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def paper_layers(cut: str):
    import keras
    from keras import layers

    inp = keras.Input((240, 240, 1))
    x = layers.Rescaling(1 / 255.0)(inp)
    x = layers.MaxPooling2D()(layers.Conv2D(32, 3, activation="relu")(x))
    if cut == "conv1":
        return keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling2D()(x)))
    x = layers.MaxPooling2D()(layers.Conv2D(32, 3, activation="relu")(x))
    if cut == "conv2":
        return keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.GlobalAveragePooling2D()(x)))
    x = layers.Dense(500, activation="relu")(layers.Flatten()(layers.Dropout(0.5)(x)))
    return keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.Dropout(0.5)(x)))


def adam_updates(rounds: int) -> list[tuple[str, float]]:
    import keras

    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    g = tf.random.normal((107648, 500))
    v = keras.Variable(np.zeros((107648, 500), np.float32))
    opt = keras.optimizers.Adam(1e-4)
    opt.build([v])
    keras_step = tf.function(lambda g: opt.apply([g], [v]))
    w, m, s = (tf.Variable(tf.zeros_like(g)) for _ in range(3))

    @tf.function
    def fused_step(g):
        tf.raw_ops.ResourceApplyAdam(var=w.handle, m=m.handle, v=s.handle, beta1_power=0.9, beta2_power=0.999,
                                     lr=1e-4, beta1=0.9, beta2=0.999, epsilon=1e-7, grad=g)

    out = []
    for name, fn, var in (("Keras Adam", keras_step, v), ("TensorFlow fused ResourceApplyAdam", fused_step, w)):
        fn(g)
        best = []
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(10):
                fn(g)
            np.asarray(var[0, 0])
            best.append((time.perf_counter() - t) / 10 * 1000)
        out.append((f"Adam update of 53.8M weights, {name}", min(best)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=320)
    a = ap.parse_args()
    if a.rounds < 1 or a.images < 32:
        sys.exit("error: --rounds must be >= 1 and --images >= 32")
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (a.images, 240, 240, 1)).astype(np.float32)
    y = rng.integers(0, 2, a.images).astype(np.float32)
    models = {}
    for name, cut, jit, policy in (("conv1", "conv1", False, None), ("conv2", "conv2", False, None),
                                   ("whole", "whole", False, None), ("whole, XLA", "whole", True, None),
                                   ("whole, mixed_bfloat16", "whole", False, "mixed_bfloat16")):
        before = keras.mixed_precision.global_policy()
        if policy:
            keras.mixed_precision.set_global_policy(policy)
        m = paper_layers(cut)
        keras.mixed_precision.set_global_policy(before)
        m.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", jit_compile=jit)
        m.fit(x, y, epochs=2, batch_size=32, verbose=0)
        models[name] = m
    rows = []
    steps = -(-a.images // 32)
    for r in range(1, a.rounds + 1):
        for cut, m in models.items():
            t = time.perf_counter()
            m.fit(x, y, epochs=1, batch_size=32, verbose=0)
            rows.append((f"round {r}: fit, layers up to {cut}", (time.perf_counter() - t) / steps * 1000, "ms per batch of 32"))
    rows += [(name, ms, "ms") for name, ms in adam_updates(a.rounds)]
    mat = rng.random((1500, 1500)).astype(np.float32)
    t = time.perf_counter()
    for _ in range(10):
        mat @ mat
    rows.append(("numpy float32 matmul 1500x1500, all cores", 10 * 2 * 1500 ** 3 / (time.perf_counter() - t) / 1e9, "GFLOP/s"))
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}\n")
    print("| measure | value | unit |\n| --- | ---: | --- |")
    for name, value, unit in rows:
        print(f"| {name} | {value:.0f} | {unit} |")


if __name__ == "__main__":
    main()
