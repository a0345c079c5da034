"""Patch training: fit the patch model (:mod:`bt_core.models.patch`) on several sources, fast on a CPU.

The frozen lower part of the backbone (stem to the end of stage 4: Lite0's ``block07_add``, Lite1's
``block10_add``, :data:`bt_core.models.patch.CUTS`) runs once per image and per
augmented view (:func:`bt_core.data.augment.views`, ``TrainConfig.views`` of them per image, seeded);
its activations are cached on disk by data fingerprint. These long frozen passes run through LiteRT where it
can (:mod:`bt_core.models.fast_pass`; about twice Keras' speed on a 2-core CPU). Each fit then trains only the upper part
(the stride-16 stage's blocks, Lite0's 08-10, BatchNorm frozen, and the patch head) on the cached activations of its own training
images and of their views, never on a view of a validation or test image. With ``freeze_backbone``
those blocks run once too and only the head trains (about ten times faster on a CPU). With
``symmetry`` the mirror image of every image and view runs too (its own cache), and the head trains on
the map beside its difference from the mirror's (:class:`bt_core.models.patch.Asymmetry`); when the upper
blocks train, they run on both cached arrays in every step.

Defaults (``TrainConfig``): 8 epochs of ``samples_per_epoch`` (12000) rows drawn with weights that
give every (source family, class) pair the same share (``balance="source"``; ``"position"`` also takes slice
position out of the label within a family, :mod:`bt_core.models.sampling`), batch 32, Adam 3e-4,
mask-loss weight 1. Cell targets come from the expert masks (:func:`bt_core.data.sources.load_masks`).
With ``synth_lesions`` P, a share P of the views of no-tumour images carry a drawn lesion
(:mod:`bt_core.data.lesions`) and train as tumours with its mask; together they weigh ``lesion_weight``
times one (source family, class) pair.
"""
from __future__ import annotations

import time
from typing import Callable

import keras
import numpy as np

from bt_core.config import TrainConfig
from bt_core.data import augment, folders, lesions, prepare, sources
from bt_core.models import patch, sampling
from bt_core.models.fast_pass import FastPass

Progress = Callable[[dict], None]
SYNTHETIC = "synthetic|1"  # the balance key of the views with a drawn lesion (bt_core.data.lesions)


def cell_targets(masks: np.ndarray, has_mask: np.ndarray, cells: int) -> np.ndarray:
    """(N, cells, cells, 2) float32: tumour share of each cell, and 1 where that share is known."""
    n, size = len(masks), masks.shape[1]
    if size % cells == 0:
        f = size // cells
        m = masks.reshape(n, cells, f, cells, f).mean((2, 4)) / 255.0
    else:  # area average (box filter) to the cell grid
        from PIL import Image
        m = np.stack([np.asarray(Image.fromarray(x.astype(np.float32)).resize((cells, cells), Image.BOX))
                      for x in masks]) / 255.0
    known = np.broadcast_to(np.asarray(has_mask, np.float32)[:, None, None], m.shape)
    return np.stack([m, known], -1).astype(np.float32)


class PatchTrainer:
    """Cached activations of every image of ``ds`` and of its views; fits patch models on index sets."""

    def __init__(self, cfg: TrainConfig, ds: folders.Dataset, masks: np.ndarray, has_mask: np.ndarray,
                 progress: Progress | None = None):
        self.cfg, self.ds, self.report = cfg, ds, progress or (lambda e: None)
        self._template: keras.Model | None = None  # built on the first feature pass that needs one
        views, view_masks, self.view_source = augment.views(ds.images, cfg.views, cfg.seed, masks, cfg.strip_skull,
                                                                      cfg.remap_intensity)
        self.source = np.concatenate([np.arange(len(ds)), self.view_source])
        self.labels = np.asarray(ds.labels)[self.source].astype(np.float32)  # per row: a drawn lesion makes it 1
        known = np.asarray(has_mask)[self.source].copy()
        drawn = np.zeros(len(self.source), bool)
        if cfg.synth_lesions:
            views, lesion_masks, drawn[len(ds):] = lesions.implant_views(views, ds.labels[self.view_source],
                                                                         cfg.synth_lesions, cfg.seed)
            hit = drawn[len(ds):]
            if hit.any():
                view_masks[hit] = prepare.at_size(lesion_masks[hit], view_masks.shape[1])
            self.labels[drawn], known[drawn] = 1.0, True
        all_masks = np.concatenate([masks, view_masks]) if cfg.views else masks
        self.cells = cfg.image_size // 16
        self.targets = cell_targets(all_masks, known, self.cells)
        rows = np.concatenate([ds.images, views]) if cfg.views else ds.images
        self.acts = self._activations(rows)
        self.mirror = None  # fine-tuned symmetric model: the mirror images' activations, beside self.acts
        if cfg.freeze_backbone:  # the upper blocks are frozen too: run them once, train the head alone
            self.acts = self._frozen_features(self.acts)
        if cfg.symmetry:  # the map of each mirror image, at the same cells: the head sees |a - b| beside a
            mirror = self._activations(rows[:, :, ::-1], "-mirror")
            if cfg.freeze_backbone:
                mirror = self._frozen_features(mirror)
                self.acts = np.concatenate([self.acts, np.abs(self.acts - mirror)], axis=-1)
            else:  # the upper blocks train: they run on both arrays in every step
                self.mirror = mirror
            del mirror
        fam = ds.family_of()
        keys = np.char.add(np.char.add(fam[self.source].astype(str), "|"), ds.labels[self.source].astype(str))
        self.keys = keys.astype(object)  # any length: a family name may be shorter than SYNTHETIC
        self.keys[drawn] = SYNTHETIC  # drawn lesions weigh as one more (source, class) pair, times lesion_weight
        self.family = fam[self.source]
        self.position = (np.where(drawn, np.nan, sources.slice_positions(ds)[self.source])  # place in the volume
                         if cfg.balance == "position" else None)

    def _activations(self, imgs: np.ndarray, tag: str = "") -> np.ndarray:
        cfg = self.cfg
        key = (f"patchacts-{self.ds.fingerprint}-v{cfg.views}-s{cfg.seed}-{cfg.image_size}-{cfg.preprocess}"
               f"-{cfg.backbone_weights}" + ("" if cfg.backbone == "efficientnet_lite0" else f"-{cfg.backbone}")
               + (f"-strip{cfg.strip_skull:g}" if cfg.strip_skull else "")
               + (f"-remap{cfg.remap_intensity:g}v1" if cfg.remap_intensity else "")
               + (f"-lesion{cfg.synth_lesions:g}v{lesions.VERSION}" if cfg.synth_lesions else "") + tag)
        path = folders.default_cache_dir() / f"{key}.npy"
        if cfg.backbone_weights == "default" and self.ds.fingerprint and path.is_file():
            acts = np.load(path)
            if len(acts) == len(imgs):
                return acts
        what = "mirror images of the images and their views" if tag else "images and their views"
        chunks = []
        with FastPass(patch.lower(self._feature_model()), len(imgs)) as run:
            self.report({"event": "features", "stage": f"backbone activations ({what}; {run.describe()})", "n": len(imgs)})
            for a in range(0, len(imgs), 512):
                x = prepare.as_batch(prepare.at_size(imgs[a:a + 512], cfg.image_size), 1, cfg.preprocess)
                chunks.append(run(x).astype(np.float16))
                self.report({"event": "decode", "i": min(a + 512, len(imgs)), "n": len(imgs)})
        acts = np.concatenate(chunks)
        if cfg.backbone_weights == "default" and self.ds.fingerprint:
            folders.save_cache(path, acts)
        return acts

    def _frozen_features(self, acts: np.ndarray) -> np.ndarray:
        trunk = patch.core_of(self._feature_model())
        mid = trunk.get_layer(patch.fine_tune_from(trunk)).output
        with FastPass(keras.Model(mid, trunk.output), len(acts), batch_size=128) as run:
            self.report({"event": "features", "stage": f"frozen upper blocks ({run.describe()})", "n": len(acts)})
            return np.concatenate([run(acts[a:a + 2048]).astype(np.float16) for a in range(0, len(acts), 2048)])

    def _upper(self, model: keras.Model) -> keras.Model:
        """What trains on the cached arrays: the upper blocks and the head, or the head alone when frozen."""
        if not self.cfg.freeze_backbone:
            return patch.split(model)[1]
        a = keras.Input(self.acts.shape[1:], name="features_in")
        cells = model.get_layer("patch_head")(a)
        prob = model.get_layer("prob")(model.get_layer("logit")(model.get_layer("lse_pool")(cells)))
        return keras.Model(a, {"prob": prob, "patch_logit": cells}, name="head")

    def _feature_model(self) -> keras.Model:
        """One built model whose lower layers the feature passes run (built once, not once per pass)."""
        if self._template is None:
            self._template = self.build()
        return self._template

    def build(self) -> keras.Model:
        c = self.cfg
        return patch.build(c.backbone_weights, c.image_size, dropout=c.dropout, fine_tune=not c.freeze_backbone,
                           seed=c.seed, head_depth=c.head_depth, head_units=c.dense_units, symmetry=c.symmetry,
                           backbone=c.backbone, style=c.feature_style)

    def inputs(self, rows):
        """What the trained part takes for ``rows``: their cached array, and their mirror images' beside it
        when a symmetric model fine-tunes its upper blocks."""
        x = self.acts[rows].astype(np.float32)
        return x if self.mirror is None else [x, self.mirror[rows].astype(np.float32)]

    def rows_of(self, idx) -> np.ndarray:
        """Rows (images and their views) of the images ``idx``."""
        return np.flatnonzero(np.isin(self.source, np.asarray(idx)))

    def row_weights(self, rows) -> np.ndarray:
        """Sampling weights of ``rows``: every (source family, class) pair alike with ``balance="source"``,
        and with ``"position"`` each class alike along the volume within it too (:func:`bt_core.models.sampling.position_weights`);
        the drawn lesions ``lesion_weight`` times that."""
        rows = np.asarray(rows)
        keys = self.keys[rows]
        w = sampling.sample_weights(self.cfg, self.family[rows], self.labels[rows],
                                    None if self.position is None else self.position[rows], keys=keys)
        return np.where(keys == SYNTHETIC, w * self.cfg.lesion_weight, w)

    def fit(self, idx, stage: str = "fit", val_idx=None):
        """Train a fresh patch model on the images ``idx`` and their views -> (full model, history)."""
        cfg = self.cfg
        keras.backend.clear_session()
        model = self.build()
        upper = self._upper(model)
        patch.compile_upper(upper, cfg.lr, cfg.mask_weight)
        rows = self.rows_of(idx)
        y = self.labels
        w = self.row_weights(rows)
        rng = np.random.default_rng(cfg.seed)
        hist: dict[str, list] = {}
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            r = sampling.draw_rows(rows, w, cfg.samples_per_epoch, rng)
            n = len(r)
            h = upper.fit(self.inputs(r), {"prob": y[r], "patch_logit": self.targets[r]},
                          batch_size=cfg.batch_size, epochs=1, shuffle=True, verbose=0)
            logs = {k: float(v[-1]) for k, v in h.history.items()}
            logs = {"loss": logs.get("loss", np.nan), "accuracy": logs.get("prob_accuracy", np.nan),
                    "mask_loss": logs.get("patch_logit_loss", np.nan)}
            if val_idx is not None and len(val_idx):
                p = self.predict(model, val_idx)
                yv = self.ds.labels[np.asarray(val_idx)]
                logs["val_accuracy"] = float(((p >= 0.5) == yv).mean())
                logs["val_loss"] = float(-np.mean(yv * np.log(np.clip(p, 1e-7, 1)) + (1 - yv) * np.log(np.clip(1 - p, 1e-7, 1))))
            for k, v in logs.items():
                hist.setdefault(k, []).append(v)
            dt = max(time.perf_counter() - t0, 1e-9)
            self.report({"event": "epoch", "stage": stage, "epoch": epoch + 1, "epochs": cfg.epochs,
                         "seconds": round(dt, 3), "images_per_s": round(n / dt, 1), "logs": logs})
        return model, hist

    def predict(self, model: keras.Model, idx) -> np.ndarray:
        """Tumour probability of the (original) images ``idx`` from their cached activations."""
        upper = self._upper(model)
        out = upper.predict(self.inputs(np.asarray(idx)), batch_size=128, verbose=0)
        return np.asarray(out["prob"], np.float64).reshape(-1)
