#!/usr/bin/env python
"""Speed and memory benchmarks of bt_core: prints ONE markdown table on stdout, progress on stderr.

    .venv/bin/python bench/run.py                     # full run (minutes on 2 CPU cores)
    .venv/bin/python bench/run.py --quick             # tiny sizes: a smoke test, not figures
    .venv/bin/python bench/run.py --only decode,predict --out bench/last.md
    KERAS_BACKEND=jax python bench/run.py             # same script on JAX (GPU if jax sees one)

Row groups (``--only``): decode, train, features, patchpass, headcache, predict, upload, coldstart, estimate,
memory. What each row measures is in bench/README.md. Data: ``--data DIR`` (default
``../shared/data/br35h`` when it exists), sampled down to ``--n-images`` through symlinks in a
temporary folder; synthetic JPEGs when there is no data folder. Models: the runs listed in
``<trained_models>/shipped.json`` for the upload and cold-start rows, else two untrained stand-ins
saved to a temporary registry (the table says which). Exit status 1 when a group failed (its row
says "error"), 2 on bad options.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GROUPS = ("decode", "train", "features", "patchpass", "headcache", "predict", "upload", "coldstart", "estimate", "memory")
TRAIN_KINDS = {"paper_cnn": "paper_cnn", "compact_cnn": "compact_cnn",
               "transfer_head": "transfer, head on cached features",
               "transfer_e2e": "transfer, end-to-end (frozen backbone)"}
FULL = dict(n_images=400, train_images=320, epochs=2, head_epochs=10, repeats=30, warmup=3)
QUICK = dict(n_images=16, train_images=32, epochs=1, head_epochs=2, repeats=3, warmup=1)
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"
T0 = time.perf_counter()

# Runs in a fresh interpreter: import, load both predictors, answer one image; one JSON line out.
COLD_CHILD = r"""
import json, os, resource, sys, time
t_start = time.time(); p0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from bt_core.data import images
from bt_core.serving.inference import Predictor
p1 = time.perf_counter()
engine = sys.argv[3]
# as the app does: records and checks now, the Keras models load in background threads at once
preds = [Predictor(run, engine=engine) for run in sys.argv[4:]]
p2 = time.perf_counter()
img = images.load_image(sys.argv[2])
answers = [p.answer([img.pixels], [img.name])[0].decision for p in preds]
t_answer = time.time(); p3 = time.perf_counter()
[p.model for p in preds]  # heatmaps need the Keras models: wait for the background loads
p4 = time.perf_counter()
import psutil
rss = psutil.Process().memory_info().rss
try:  # VmHWM: ru_maxrss of an exec'd child on Linux still counts the parent's memory at fork
    peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"t_start": t_start, "t_answer": t_answer, "imports": p1 - p0, "load": p2 - p1,
                  "answer": p3 - p2, "keras_ready": p4 - p0, "rss_loaded": rss, "peak": peak, "answers": answers,
                  "engines": [p.engine for p in preds]}))
"""


def log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def fmt(v) -> str:
    if isinstance(v, (tuple, list)):
        return " / ".join(fmt(x) for x in v)
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        a = abs(float(v))
        return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 1 else f"{v:.3g}"
    return str(v)


def percentiles_ms(times) -> tuple[float, float]:
    t = np.asarray(times, np.float64) * 1000
    return float(np.percentile(t, 50)), float(np.percentile(t, 95))


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware", "cpu model"):
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rss_bytes() -> int:
    import psutil
    return psutil.Process().memory_info().rss


def peak_rss_bytes() -> int:
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def backend_info() -> tuple[str, str, list[str]]:
    """(backend, framework version, accelerator/CPU device names) of the active Keras backend."""
    import keras
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return backend, f"jax {jax.__version__}", [f"{d.platform}:{d.id} {d.device_kind}" for d in jax.devices()]
        if backend == "tensorflow":
            import tensorflow as tf
            names = []
            for d in tf.config.list_physical_devices():
                detail = tf.config.experimental.get_device_details(d).get("device_name", "") if d.device_type == "GPU" else ""
                names.append(f"{d.name.replace('/physical_device:', '')} {detail}".strip())
            return backend, f"tensorflow {tf.__version__}", names
        if backend == "torch":
            import torch
            dev = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
            return backend, f"torch {torch.__version__}", dev
    except Exception as err:  # noqa: BLE001 - device names are informative only
        return backend, "?", [f"unknown ({type(err).__name__})"]
    return backend, "?", ["?"]


def device_peak_memory() -> tuple[str, int] | None:
    """(device, peak bytes) of the first accelerator where the backend reports it, else None."""
    import keras
    try:
        if keras.backend.backend() == "jax":
            import jax
            dev = jax.devices()[0]
            if dev.platform != "cpu":
                return dev.device_kind, int((dev.memory_stats() or {})["peak_bytes_in_use"])
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            if tf.config.list_physical_devices("GPU"):
                return "GPU:0", int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        elif keras.backend.backend() == "torch":
            import torch
            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0), int(torch.cuda.max_memory_allocated())
    except Exception:  # noqa: BLE001
        pass
    return None


def epoch_times(model, x, y, epochs: int, batch_size: int) -> list[float]:
    """Seconds of each of ``epochs`` epochs of ``model.fit``, after one untimed warm-up epoch."""
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.t0 = [], 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            for value in (logs or {}).values():
                float(value)  # waits for asynchronous backends (JAX, GPU) to finish the epoch
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    model.fit(x, y, epochs=1 + epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=[timer])
    return timer.times[1:]


def eval_rate(model, x, y, batch_size: int) -> float:
    """Images per second of ``model.evaluate`` (a validation pass), after one untimed warm-up pass."""
    model.evaluate(x, y, batch_size=batch_size, verbose=0)
    t = time.perf_counter()
    model.evaluate(x, y, batch_size=batch_size, verbose=0)
    return len(y) / (time.perf_counter() - t)


def latency(fn, repeats: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return percentiles_ms(times)


def synthetic_folder(root: Path, n: int, seed: int) -> None:
    """n JPEGs (half tumour-like) of mixed sizes: a grey disc with noise, plus a bright blob for yes/."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for i in range(n):
        tumour = i % 2 == 1
        size = int(rng.integers(180, 520))
        yy, xx = np.mgrid[:size, :size]
        img = 40 + 60 * (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.42) ** 2)
        img = img + rng.normal(0, 8, (size, size))
        if tumour:
            cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
            r = size * rng.uniform(0.07, 0.12)
            img += 150 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)))
        folder = root / ("yes" if tumour else "no")
        folder.mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        grey.convert("RGB").save(folder / f"synthetic{i}.jpg", quality=90)  # Br35H: grey stored as RGB JPEG


class Bench:
    def __init__(self, args):
        self.a = args
        self.rows: list[tuple] = []
        self.memo: dict = {}
        self.failed: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="bt-bench-"))
        from bt_core.models import efficientnet_lite as lite
        self.weights = "default" if lite.default_weights_path().is_file() else None
        self.weights_note = "ImageNet weights" if self.weights else "random weights (no Lite0 weights file)"

    def row(self, section, measure, value, unit="", note=""):
        self.rows.append((section, measure, value, unit, note))

    def once(self, key, fn):
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def cfg(self, kind: str, **kw):
        from bt_core.models.training import TrainConfig
        return TrainConfig(model=kind, image_size=self.a.image_size, batch_size=self.a.batch_size,
                           backbone_weights=self.weights, seed=self.a.seed, **kw).validate()

    # ------------------------------------------------------------------ shared inputs
    def folder(self) -> Path:
        return self.once("folder", self._make_folder)

    def _make_folder(self) -> Path:
        from bt_core import data
        a, root = self.a, self.tmp / "data"
        if a.data is None:
            log(f"no data folder: generating {a.n_images} synthetic JPEGs")
            synthetic_folder(root, a.n_images, a.seed)
            self.memo["data_note"] = "synthetic JPEGs"
            return root
        src, rng, total = Path(a.data), np.random.default_rng(a.seed), 0
        for cls, k in (("no", a.n_images - a.n_images // 2), ("yes", a.n_images // 2)):
            files = sorted(p for p in (src / cls).iterdir()
                           if p.is_file() and p.suffix.lower() in data.IMAGE_EXTENSIONS)
            (root / cls).mkdir(parents=True)
            for i in sorted(rng.choice(len(files), size=min(k, len(files)), replace=False)):
                try:
                    (root / cls / files[i].name).symlink_to(files[i].resolve())
                except OSError:
                    shutil.copy2(files[i], root / cls / files[i].name)
                total += 1
        self.memo["data_note"] = f"{total} sampled (seed {a.seed}) from {src}"
        return root

    def dataset(self):
        from bt_core import data
        return self.once("dataset", lambda: data.load_folder(self.folder(), self.a.image_size,
                                                             cache_dir=self.tmp / "cache"))

    def train_xy(self):
        def make():
            from bt_core import data
            ds = self.dataset()
            idx = np.arange(self.a.train_images) % len(ds)  # repeats images when asked for more than decoded
            return data.as_batch(ds.images[idx]), ds.labels[idx].astype(np.float32)
        return self.once("train_xy", make)

    def features(self) -> dict:
        def make():
            from bt_core.models import networks
            from bt_core.models.training import build_model
            x, _ = self.train_xy()
            log(f"backbone features: {len(x)} images (warm-up pass, then timed pass)")
            cfg = self.cfg("transfer")
            model = build_model(cfg)
            extractor, head = networks.split_at_features(model)
            networks.compile_model(head, cfg.lr)  # as bt_core.models.training.fit does
            extractor.predict(x, batch_size=self.a.batch_size, verbose=0)
            t = time.perf_counter()
            feats = np.asarray(extractor.predict(x, batch_size=self.a.batch_size, verbose=0), np.float32)
            seconds = time.perf_counter() - t
            return {"feats": feats, "head": head, "model": model, "seconds": seconds, "rate": len(x) / seconds}
        return self.once("features", make)

    def fit_times(self, kind: str) -> list[float]:
        def make():
            from bt_core.models.training import build_model
            a = self.a
            x, y = self.train_xy()
            if kind == "transfer_head":
                f = self.features()
                log(f"training {kind}: {len(y)} feature vectors, 1 + {a.head_epochs} epochs")
                times = epoch_times(f["head"], f["feats"], y, a.head_epochs, a.batch_size)
                self.memo[f"params:{kind}"] = f["head"].count_params()
                self.memo[f"eval:{kind}"] = eval_rate(f["head"], f["feats"], y, a.batch_size)
                return times
            model = build_model(self.cfg("transfer", cache_features=False) if kind == "transfer_e2e" else self.cfg(kind))
            log(f"training {kind}: {len(y)} images, 1 + {a.epochs} epochs")
            times = epoch_times(model, x, y, a.epochs, a.batch_size)
            self.memo[f"params:{kind}"] = model.count_params()
            self.memo[f"eval:{kind}"] = eval_rate(model, x, y, a.batch_size)
            del model
            gc.collect()
            return times
        return self.once(f"fit:{kind}", make)

    def train_rate(self, kind: str) -> float:
        times = self.fit_times(kind)
        return self.a.train_images * len(times) / sum(times)

    def upload_png(self) -> Path:
        def make():
            from PIL import Image
            from bt_core import data
            from bt_core.data import images
            paths, labels = data.list_folder(self.folder())
            src = self.folder() / paths[int(np.argmax(labels))]  # the first tumour image
            pixels = images.load_image(src).pixels
            out = self.tmp / "upload.png"
            Image.fromarray(pixels).save(out, format="PNG")
            return out
        return self.once("upload_png", make)

    def predictors(self) -> dict:
        def make():
            from bt_core import runs
            from bt_core.errors import ModelError
            from bt_core.serving.inference import Predictor
            from bt_core.models.training import build_model
            root = Path(self.a.models_root) if self.a.models_root else runs.default_root()
            shipped = root / "shipped.json"
            if shipped.is_file():
                try:
                    ids = json.loads(shipped.read_text())
                    paths = [str(root / ids["cnn"]), str(root / ids["transfer"])]
                except (OSError, ValueError, KeyError, TypeError):
                    raise ModelError(f'{shipped} must hold {{"cnn": RUN_ID, "transfer": RUN_ID}}') from None
                note = f"shipped runs {ids['cnn']} and {ids['transfer']}"
            else:
                log(f"no {shipped}: saving two untrained stand-in runs to a temporary registry")
                paths = []
                for kind in ("compact_cnn", "transfer"):
                    cfg = self.cfg(kind)
                    record = {"mode": "bench", "config": cfg.to_dict(), "label": f"untrained {kind}"}
                    paths.append(str(runs.save_run(record, build_model(cfg), self.tmp / "registry", f"bench-{kind}")))
                note = f"UNTRAINED stand-ins (no {shipped}): compact_cnn and transfer"
            gc.collect()
            before = rss_bytes()
            t = time.perf_counter()
            preds = [Predictor(p) for p in paths]
            [p.model for p in preds]  # loaded in background threads: wait for both
            load_s = time.perf_counter() - t
            return {"preds": preds, "paths": paths, "note": note, "load_s": load_s,
                    "rss_before": before, "rss_after": rss_bytes()}
        return self.once("predictors", make)

    # ------------------------------------------------------------------ row groups
    def g_decode(self):
        from bt_core import data
        a, root = self.a, self.folder()
        n = len(data.list_folder(root)[0])
        cache = self.tmp / "decode-cache"
        log(f"decode: {n} files, cold")
        t = time.perf_counter()
        ds = data.load_folder(root, a.image_size, cache_dir=cache)
        cold = time.perf_counter() - t
        log("decode: cached")
        t = time.perf_counter()
        data.load_folder(root, a.image_size, cache_dir=cache)
        warm = time.perf_counter() - t
        self.memo.setdefault("dataset", ds)
        self.row("decode", "decode + resize, cold (empty cache dir)", n / cold, "images/s",
                 f"{n} files -> {a.image_size}x{a.image_size} uint8; {len(ds.skipped)} skipped; OS file cache not dropped")
        self.row("decode", "decode + resize, cached (second call)", n / warm, "images/s",
                 "hash of every file's content + one .npz read")

    def g_train(self):
        a = self.a
        for kind, label in TRAIN_KINDS.items():
            rate = self.train_rate(kind)
            epochs = len(self.fit_times(kind))
            what = "feature vectors" if kind == "transfer_head" else "images"
            self.row("training", label, rate, "images/s",
                     f"{a.train_images} {what}, {epochs} timed epoch(s) after 1 warm-up; batch {a.batch_size}, "
                     f"{a.image_size}px; {self.memo[f'params:{kind}']:,} params")
            self.row("training", f"{label}, validation pass", self.memo[f"eval:{kind}"], "images/s",
                     f"model.evaluate on the same {a.train_images} {what}, after a warm-up pass")

    def g_features(self):
        f = self.features()
        self.row("features", "backbone feature extraction (EfficientNet-Lite0)", f["rate"], "images/s",
                 f"{self.a.train_images} images, batch {self.a.batch_size}, after a warm-up pass; {self.weights_note}")

    def g_patchpass(self):
        """The patch model's frozen passes at 240 px (the shipped recipe's), Keras ``predict`` against LiteRT."""
        import keras
        from bt_core.data import prepare
        from bt_core.models import patch
        from bt_core.models.fast_pass import FastPass
        n = self.a.train_images
        ds = self.dataset()
        imgs = ds.images[np.arange(n) % len(ds)]
        x = prepare.as_batch(prepare.at_size(imgs, 240), 1, "equalize")
        model = patch.build(self.weights, 240, head_units=128, head_depth=2, symmetry=True, seed=self.a.seed)
        trunk = patch.core_of(model)
        upper = keras.Model(trunk.get_layer(patch.fine_tune_from(trunk)).output, trunk.output)
        inp = x
        for name, part, batch in (("lower blocks", patch.lower(model), 64), ("frozen upper blocks", upper, 128)):
            log(f"patch pass: {name}, {n} images, Keras then LiteRT")
            part.predict(inp[:batch], batch_size=batch, verbose=0)
            t = time.perf_counter()
            want = np.asarray(part.predict(inp, batch_size=batch, verbose=0), np.float32)
            keras_rate = n / (time.perf_counter() - t)
            t = time.perf_counter()
            with FastPass(part, n, batch_size=batch, min_images=0) as run:
                export_s = time.perf_counter() - t
                t = time.perf_counter()
                got = run(inp)
                lite_rate = n / (time.perf_counter() - t)
                engine = run.describe()
            diff = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-9))
            same16 = float((got.astype(np.float16) == want.astype(np.float16)).mean())  # as the cache stores them
            note = f"{n} images at 240 px, equalised; {self.weights_note}"
            self.row("patch pass", f"{name}, Keras predict (batch {batch})", keras_rate, "images/s", note)
            self.row("patch pass", f"{name}, {engine}", lite_rate, "images/s",
                     f"{note}; export and check {export_s:.1f} s, once a pass; largest difference {diff:.1e} (relative)")
            self.row("patch pass", f"{name}, values equal to Keras' in float16 (the cache's type)", 100 * same16, "%",
                     f"{note}; {got.size:,} values")
            inp = want  # the upper blocks take the lower blocks' activations

    def g_headcache(self):
        head = float(np.mean(self.fit_times("transfer_head")))
        e2e = float(np.mean(self.fit_times("transfer_e2e")))
        n = self.a.train_images
        self.row("head vs end-to-end", "head on cached features", head, "s/epoch", f"{n} images")
        self.row("head vs end-to-end", "end-to-end, frozen backbone", e2e, "s/epoch", f"{n} images")
        self.row("head vs end-to-end", "ratio end-to-end / head", e2e / head, "x", "per epoch, same model either way")
        self.row("head vs end-to-end", "one-off feature pass", self.features()["seconds"], "s",
                 f"{n} images; paid once per data set (cached on disk by training)")

    def g_predict(self):
        from bt_core import data
        from bt_core.explain import gradcam
        from bt_core.models.training import build_model
        a = self.a
        x1 = data.as_batch(self.dataset().images[:1])
        for kind in ("compact_cnn", "transfer"):
            log(f"latency: {kind}, {a.repeats} repeats")
            model = build_model(self.cfg(kind))
            p = latency(lambda: model.predict(x1, verbose=0), a.repeats, a.warmup)
            b = latency(lambda: model.predict_on_batch(x1), a.repeats, a.warmup)
            g = latency(lambda: gradcam.explain(model, x1), a.repeats, a.warmup)
            note = f"{a.repeats} repeats after {a.warmup} warm-up; {a.image_size}px"
            self.row("latency", f"predict 1 image, {kind}", p, "ms p50 / p95",
                     f"model.predict (what Predictor uses); {note}")
            self.row("latency", f"predict_on_batch 1 image, {kind}", b, "ms p50 / p95",
                     f"no per-call data pipeline; {note}")
            self.row("latency", f"Grad-CAM 1 image, {kind}", g, "ms p50 / p95", f"bt_core.explain.gradcam.explain; {note}")
            del model
            gc.collect()

    def g_upload(self):
        from bt_core.data import images
        from bt_core.explain import overlay
        a, pr = self.a, self.predictors()
        png = self.upload_png().read_bytes()

        def once():
            img = images.load_image(png, name="upload.png")
            for p in pr["preds"]:
                _, heat = p.answer_and_explain([img.pixels], [img.name])  # as the Check slices page does
                overlay.overlay(img.pixels, heat[0])

        log(f"upload: {a.repeats} repeats")
        lat = latency(once, a.repeats, a.warmup)
        h, w = images.load_image(png).pixels.shape
        self.row("upload", "PNG bytes -> both answers + both Grad-CAM overlays (warm)", lat, "ms p50 / p95",
                 f"{w}x{h} PNG, {len(png) // 1024} KiB; {pr['note']}")
        self.row("upload", "load both predictors (in-process, imports done)", pr["load_s"], "s", pr["note"])

    def g_coldstart(self):
        pr, png = self.predictors(), self.upload_png()
        for engine in ("auto", "keras"):
            log(f"cold start: fresh interpreter, engine {engine}")
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-c", COLD_CHILD, str(REPO), str(png), engine, *pr["paths"]],
                                  capture_output=True, text=True, timeout=self.a.cold_timeout, env=dict(os.environ))
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"cold-start process failed (status {proc.returncode}): "
                                   f"{(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
            r = json.loads(lines[-1])
            label = "/".join(r["engines"])
            if engine == "auto":
                self.memo["cold"] = r
            self.row("cold start", f"new process -> first answer of both models ({label})", r["t_answer"] - t0, "s",
                     f"{pr['note']}; answers: {', '.join(r['answers'])}")
            self.row("cold start", "of which: interpreter start-up", r["t_start"] - t0, "s")
            self.row("cold start", "of which: imports (bt_core)", r["imports"], "s")
            self.row("cold start", "of which: construct both predictors", r["load"], "s",
                     "run records, out-of-distribution and plane checks, LiteRT files; Keras loads in background")
            self.row("cold start", "of which: first answer of both", r["answer"], "s",
                     "includes waiting for Keras and tracing where the engine is keras")
            self.row("cold start", f"Keras models ready for heatmaps, from process start ({label})",
                     r["keras_ready"] + r["t_start"] - t0, "s", "import keras + load both .keras archives")

    def g_estimate(self):
        a = self.a
        n_final = round(a.paper_images * (1 - a.test_size))
        n_fold = n_final * (a.folds - 1) / a.folds
        trained = a.paper_epochs * (a.folds * n_fold + n_final)
        evaluated = a.paper_epochs * n_final + n_final + (a.paper_images - n_final)  # per-epoch folds, OOF, test
        for kind, label in TRAIN_KINDS.items():
            rate = self.train_rate(kind)  # also measures the validation pass, memo "eval:KIND"
            seconds = trained / rate + evaluated / self.memo[f"eval:{kind}"]
            note = (f"{a.paper_epochs} epochs x ({a.folds} folds x {n_fold:.0f} + final fit {n_final}) images "
                    f"/ training images/s, + {evaluated} images / validation pass images/s (each fold's "
                    f"validation part every epoch, out-of-fold and test predictions); no model building")
            if kind == "transfer_head":
                seconds += a.paper_images / self.features()["rate"]
                note += f"; + one feature pass over {a.paper_images} images"
            self.row("estimate", f"paper protocol time, {label}", seconds / 60, "min (estimate)", note)

    def g_memory(self):
        pr = self.predictors()
        self.row("memory", "RSS after loading both predictors (this process)", mib(pr["rss_after"]), "MiB",
                 f"{mib(pr['rss_after'] - pr['rss_before']):+.0f} MiB while loading them; "
                 "includes what earlier rows left in memory")
        cold = self.memo.get("cold")
        if cold:
            self.row("memory", "RSS after loading both predictors (fresh process)", mib(cold["rss_loaded"]), "MiB",
                     "cold-start process")
            self.row("memory", "peak RSS, fresh process answering one image", mib(cold["peak"]), "MiB",
                     "VmHWM of the cold-start process")
        self.row("memory", "peak RSS of this process (ru_maxrss)", mib(peak_rss_bytes()), "MiB",
                 f"whole run: groups {', '.join(self.a.only)}")
        dev = device_peak_memory()
        if dev:
            self.row("memory", f"peak device memory ({dev[0]})", mib(dev[1]), "MiB", "as reported by the backend")

    # ------------------------------------------------------------------ driver
    def machine_rows(self):
        import keras
        import psutil
        backend, framework, devices = backend_info()
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        vm = psutil.virtual_memory()
        self.row("machine", "CPU", cpu_model(), "", platform.machine())
        self.row("machine", "cores", os.cpu_count(), "logical",
                 f"{usable} usable by this process, {psutil.cpu_count(logical=False)} physical")
        self.row("machine", "RAM", vm.total / 2**30, "GiB", f"{vm.available / 2**30:.1f} GiB available at start")
        self.row("machine", "load average at start", os.getloadavg()[0], "1 min", "other processes slow every row")
        self.row("machine", "Keras backend", backend, "", f"keras {keras.__version__}, {framework}, "
                 f"Python {platform.python_version()}")
        self.row("machine", "device(s)", "; ".join(devices))
        self.row("machine", "data", self.memo.get("data_note", "not used"), "",
                 f"{'--quick: tiny sizes, not figures; ' if self.a.quick else ''}seed {self.a.seed}")

    def run(self):
        for group in GROUPS:
            if group not in self.a.only:
                continue
            log(f"== {group}")
            try:
                getattr(self, f"g_{group}")()
            except Exception as err:  # noqa: BLE001 - one failed group must not lose the others
                traceback.print_exc(file=sys.stderr)
                msg = " ".join(str(err).split())[:200] or type(err).__name__
                self.row(group, f"{group} failed", "error", "", f"{type(err).__name__}: {msg}")
                self.failed.append(group)
        machine = len(self.rows)
        self.machine_rows()
        self.rows = self.rows[machine:] + self.rows[:machine]

    def table(self) -> str:
        lines = ["| section | measure | value | unit | notes |", "| --- | --- | ---: | --- | --- |"]
        for row in self.rows:
            lines.append("| " + " | ".join(fmt(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |")
        return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Row groups: " + ", ".join(GROUPS) + ". See bench/README.md.")
    p.add_argument("--data", default=None, help=f"two-class folder (yes/, no/); default {DEFAULT_DATA} if it exists")
    p.add_argument("--synthetic", action="store_true", help="use generated JPEGs even when a data folder exists")
    p.add_argument("--n-images", type=int, help=f"images sampled from --data (default {FULL['n_images']})")
    p.add_argument("--train-images", type=int, help=f"images per training epoch (default {FULL['train_images']})")
    p.add_argument("--epochs", type=int, help=f"timed training epochs after the warm-up one (default {FULL['epochs']})")
    p.add_argument("--head-epochs", type=int, help=f"timed epochs of the head on features (default {FULL['head_epochs']})")
    p.add_argument("--repeats", type=int, help=f"timed repeats of each latency (default {FULL['repeats']})")
    p.add_argument("--warmup", type=int, help=f"untimed calls before each latency (default {FULL['warmup']})")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=240)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--models-root", default=None, help="run registry with shipped.json (default trained_models/)")
    p.add_argument("--paper-images", type=int, default=3000, help="data set size for the estimate (Br35H: 3000)")
    p.add_argument("--paper-epochs", type=int, default=30)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--cold-timeout", type=int, default=600, help="seconds allowed to the cold-start process")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test: "
                   + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    p.add_argument("--only", default=",".join(GROUPS), help="comma-separated row groups (default: all)")
    p.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (printed on stderr)")
    a = p.parse_args(argv)
    for key, value in (QUICK if a.quick else FULL).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.only = [g.strip() for g in a.only.split(",") if g.strip()]
    unknown = [g for g in a.only if g not in GROUPS]
    if unknown or not a.only:
        p.error(f"unknown row group(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(GROUPS)}")
    for key in ("n_images", "train_images", "epochs", "head_epochs", "repeats", "batch_size", "folds", "paper_epochs"):
        if getattr(a, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if a.n_images < 2:
        p.error("--n-images must be at least 2 (one per class)")
    if a.warmup < 0 or not 0 < a.test_size < 1:
        p.error("--warmup must be >= 0 and --test-size between 0 and 1")
    if a.synthetic:
        a.data = None
    elif a.data is None:
        a.data = str(DEFAULT_DATA) if (DEFAULT_DATA / "yes").is_dir() else None
    elif not ((Path(a.data) / "yes").is_dir() and (Path(a.data) / "no").is_dir()):
        p.error(f"--data {a.data} needs yes/ and no/ subfolders")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    bench = Bench(args)
    log(f"groups: {', '.join(args.only)}; temporary folder {bench.tmp}")
    try:
        bench.run()
    finally:
        if args.keep_tmp:
            log(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    table = bench.table()
    print(table, flush=True)
    if args.out:
        command = " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.out).write_text(f"<!-- bench/run.py {command} -->\n\n{table}\n")
        log(f"wrote {args.out}")
    log("done" + (f"; failed groups: {', '.join(bench.failed)}" if bench.failed else ""))
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
