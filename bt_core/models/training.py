"""Training: fit one model, or run the paper's protocol (k-fold CV, final fit, test), as a *run*.

Defaults are the paper's: Adam 1e-4, binary cross-entropy, 30 epochs, batch 32, 3 folds, 20% test;
but the split is group-aware (leak-free) unless ``split="random"`` is asked for.

A frozen transfer model (no fine-tuning, no augmentation) is trained on cached backbone features:
each image goes through the backbone once and only the head trains, which gives the same model as
training end to end, many times faster. With ``degrade_copies=K`` every fit also trains on K randomly
degraded copies of each of its training images (:mod:`bt_core.data.degrade`; their features cached too).
The returned run record holds the config, split indices, per-epoch histories, per-fold validation
metrics, out-of-fold and test predictions, wall time, backend and hardware; :mod:`bt_core.runs`
writes it to disk with the model.
"""
from __future__ import annotations

import time
from typing import Callable

import keras
import numpy as np

from bt_core import data as data_mod
from bt_core.evaluation import metrics
from bt_core.models import networks, runtime, sources_fit
from bt_core.models.runtime import hardware
from bt_core.models.sources_fit import sources_summary, strata_for
from bt_core.data import splits
from bt_core.config import TrainConfig  # noqa: F401  (re-exported)
from bt_core.errors import ConfigError

Progress = Callable[[dict], None]


def build_model(cfg: TrainConfig) -> keras.Model:
    shape = (cfg.image_size, cfg.image_size, cfg.channels)
    kw = dict(dropout=cfg.dropout, dense_units=cfg.dense_units, augment=cfg.augment, seed=cfg.seed)
    if cfg.model != "transfer" and cfg.head_pool:
        kw["head_pool"] = cfg.head_pool
    if cfg.model == "transfer":
        kw.update(backbone=cfg.backbone, weights=cfg.backbone_weights, fine_tune_layers=cfg.fine_tune_layers,
                  fine_tune_from=cfg.fine_tune_from, pooling=cfg.pooling, mirror=cfg.mirror)
    return networks.compile_model(networks.build(cfg.model, shape, **kw), cfg.lr)


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, progress: Progress, stage: str, n_train: int):
        super().__init__()
        self.progress, self.stage, self.n_train, self.t0 = progress, stage, n_train, time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = max(time.perf_counter() - self.t0, 1e-9)
        self.progress({"event": "epoch", "stage": self.stage, "epoch": epoch + 1,
                       "epochs": self.params.get("epochs"), "seconds": round(dt, 3),
                       "images_per_s": round(self.n_train / dt, 1),
                       "logs": {k: float(v) for k, v in (logs or {}).items()}})


def fit(cfg: TrainConfig, x_train, y_train, x_val=None, y_val=None, progress: Progress | None = None,
        stage: str = "fit", verbose: int = 0, features=None, sample_weight=None):
    """Build and train one model -> (model, history dict of per-epoch lists).

    For a frozen transfer model, ``features`` may hold the backbone features of ``x_train`` and
    ``x_val`` (a pair), computed once for all folds (:func:`backbone_features`); ``x_train`` may
    then be None.
    ``cfg.data_parallel``: build, compile and train (the head too) under
    :func:`bt_core.models.distribute.data_parallel`.
    """
    cfg.validate()
    if cfg.data_parallel:  # --- data parallel hook (bt_core.models.distribute) ---
        from bt_core.models.distribute import data_parallel

        with data_parallel():
            return _fit(cfg, x_train, y_train, x_val, y_val, progress, stage, verbose, features, sample_weight)
    return _fit(cfg, x_train, y_train, x_val, y_val, progress, stage, verbose, features, sample_weight)


def _fit(cfg, x_train, y_train, x_val, y_val, progress, stage, verbose, features, sample_weight=None):
    with runtime.dtype_policy(cfg.dtype_policy):  # layers keep the policy they got
        model = build_model(cfg)
    callbacks = [_EpochReporter(progress, stage, len(y_train))] if progress else []
    val = (x_val, y_val) if x_val is not None else None
    if cfg.uses_feature_cache:
        extractor, head = networks.split_at(model, cfg.feature_cut)
        if features is None:
            if progress:
                progress({"event": "features", "stage": stage, "n": len(y_train) + (len(y_val) if val else 0)})
            features = (extractor.predict(x_train, batch_size=cfg.batch_size, verbose=0),
                        extractor.predict(x_val, batch_size=cfg.batch_size, verbose=0) if val else None)
        _adapt_feature_norm(model, features[0])
        networks.compile_model(head, cfg.lr)
        val = (features[1], y_val) if val else None
        hist = head.fit(features[0], y_train, validation_data=val, epochs=cfg.epochs, batch_size=cfg.batch_size,
                        shuffle=True, callbacks=callbacks, verbose=verbose, sample_weight=sample_weight)
    else:
        if _feature_norm(model) is not None:
            _adapt_feature_norm(model, networks.split_at_features(model)[0].predict(x_train, batch_size=cfg.batch_size,
                                                                                   verbose=0))
            networks.compile_model(model, cfg.lr)
        hist = model.fit(x_train, y_train, validation_data=val, epochs=cfg.epochs, batch_size=cfg.batch_size,
                         shuffle=True, callbacks=callbacks, verbose=verbose, sample_weight=sample_weight)
    return model, {k: [float(v) for v in vs] for k, vs in hist.history.items()}


def _feature_norm(model: keras.Model):
    names = [layer.name for layer in model.layers]
    return model.get_layer("feature_norm") if "feature_norm" in names else None


def _adapt_feature_norm(model: keras.Model, features) -> None:
    """Fit the "feature_norm" layer (multiscale pooling) to the training features' mean and variance."""
    norm = _feature_norm(model)
    if norm is not None:
        norm.adapt(np.asarray(features, np.float32))


def backbone_features(cfg: TrainConfig, x, fingerprint: str = "", progress: Progress | None = None) -> np.ndarray:
    """Pooled backbone features of every image, computed once (and cached on disk by data fingerprint)."""
    from bt_core.data import default_cache_dir

    key = (f"feat-{fingerprint}-{cfg.backbone}-{cfg.backbone_weights}-{cfg.feature_cut}-{cfg.image_size}"
           f"-{cfg.channels}-{cfg.preprocess}" + ("" if cfg.pooling == "avg" else f"-{cfg.pooling}")
           + ("-mirror" if cfg.mirror else ""))
    path = default_cache_dir() / f"{key}.npy"
    if fingerprint and cfg.backbone_weights == "default" and path.is_file():
        return np.load(path)
    if progress:
        progress({"event": "features", "stage": "backbone features", "n": len(x)})
    extractor, _ = networks.split_at(build_model(cfg), cfg.feature_cut)
    feats = np.asarray(extractor.predict(x, batch_size=cfg.batch_size, verbose=0), np.float32)
    if fingerprint and cfg.backbone_weights == "default":
        data_mod.save_cache(path, feats)
    return feats


def predict_proba(model: keras.Model, x, batch_size: int = 32) -> np.ndarray:
    """Tumour probability for each image of a float32 batch."""
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64).reshape(-1)


def _degraded(cfg: TrainConfig, ds: data_mod.Dataset, progress: Progress):
    """``cfg.degrade_copies`` degraded copies of every image -> (batch or None, source index, features or
    None), or None. A frozen transfer model keeps only the copies' backbone features, not the images.

    Copies of all images are made once (seeded by ``cfg.seed``); each fit takes those of its own
    training images only, so no copy of a validation or test image is ever trained on.
    """
    if not cfg.degrade_copies:
        return None
    from bt_core.data import degrade

    progress({"event": "stage", "stage": f"degraded copies ({cfg.degrade_copies} per image)"})
    imgs, source = degrade.copies(data_mod.at_size(ds.images, cfg.image_size), cfg.degrade_copies, cfg.seed)
    x = data_mod.as_batch(imgs, cfg.channels, cfg.preprocess)
    if not cfg.uses_feature_cache:
        return x, source, None
    return None, source, backbone_features(cfg, x, f"{ds.fingerprint}-degrade{cfg.degrade_copies}-s{cfg.seed}", progress)


def _train_set(idx, x_all, y, feats, extra):
    """Training inputs of the images ``idx`` -> (images or None, labels, features or None), with the
    degraded copies of those images appended. Images are None when cached features replace them."""
    if extra is None:
        return (x_all[idx] if feats is None else None), y[idx], (feats[idx] if feats is not None else None)
    x_copy, source, f_copy = extra
    rows = np.flatnonzero(np.isin(source, idx))
    labels = np.concatenate([y[idx], y[source[rows]]])
    if feats is not None:
        return None, labels, np.concatenate([feats[idx], f_copy[rows]])
    return np.concatenate([x_all[idx], x_copy[rows]]), labels, None


def groups_for(ds: data_mod.Dataset, cfg: TrainConfig):
    """Groups when the split needs them, else None: the data set's own (patients from ``metadata.csv``,
    :mod:`bt_core.data.sources`) where it has them, else near-duplicate groups."""
    if cfg.split != "group":
        return None
    if ds.groups is not None:
        from bt_core.data.sources import group_ids
        return group_ids(ds)
    return splits.near_duplicate_groups(ds.images, max_distance=cfg.max_distance)


def run_protocol(cfg: TrainConfig, ds: data_mod.Dataset, mode: str = "cv", progress: Progress | None = None,
                 verbose: int = 0, only_fold: int | None = None, fold_records: list[dict] | None = None,
                 masks: tuple[np.ndarray, np.ndarray] | None = None):
    """The paper's protocol on one data set -> (final model, run record).

    ``mode="cv"``: k folds on the training part (validation metrics and out-of-fold predictions),
    then a final fit on the whole training part scored on the held-out test part.
    ``mode="train"``: only the final fit and the test.
    ``ds`` may hold several sources (:func:`bt_core.data.sources.load_sources`): splits then keep
    patients (groups) on one side and stratify by source and label, and the record gives the source of
    every prediction and per-source test figures. ``masks``: (masks, has_mask) for the patch model.
    Parallel folds (:mod:`bt_core.models.distribute`): ``only_fold=K`` runs fold K alone and returns
    (None, record) without a final fit; ``fold_records`` (the children's records) replaces the
    folds, then the final fit and the test run as usual.
    """
    cfg.validate()
    if mode not in ("cv", "train"):
        raise ConfigError(f"mode must be cv or train, got {mode!r}")
    if (only_fold is not None or fold_records is not None) and mode != "cv":
        raise ConfigError("only_fold and fold_records apply to cv mode only")
    if only_fold is not None and fold_records is not None:
        raise ConfigError("give only_fold or fold_records, not both")
    if only_fold is not None and not 1 <= only_fold <= cfg.folds:
        raise ConfigError(f"only_fold must be between 1 and {cfg.folds}")
    report = progress or (lambda event: None)
    t0 = time.perf_counter()
    y = ds.labels
    if len(set(y.tolist())) < 2:
        raise ConfigError("training needs images of both classes (yes/ and no/) across its sources")
    groups = groups_for(ds, cfg)
    strata = strata_for(ds)
    train_idx, test_idx = splits.holdout(strata, cfg.split, groups, cfg.test_size, cfg.seed)
    src = ds.source_of()
    record = {"mode": mode, "config": cfg.to_dict(),
              "data": {"root": ds.root, "classes": list(ds.classes), "n": len(y), "fingerprint": ds.fingerprint,
                       "paths": ds.paths, "labels": y.tolist(), "skipped": ds.skipped,
                       "sources": sources_summary(ds), "source": src.tolist()},
              "split": {"kind": cfg.split, "seed": cfg.seed, "train_idx": train_idx.tolist(),
                        "test_idx": test_idx.tolist(),
                        "groups": groups.tolist() if groups is not None else None},
              "folds": [], "oof": {"idx": [], "prob": [], "fold": []}}
    record["split"]["strata"] = "source and label" if strata is not y else "label"
    record["data"]["trained_on"] = {s: int((src[train_idx] == s).sum()) for s in np.unique(src)}
    if cfg.model == "patch":  # --- the patch model trains on cached activations (bt_core.models.patch_training) ---
        from bt_core.models.patch_training import PatchTrainer

        trainer = PatchTrainer(cfg, ds, *(masks if masks is not None else sources_fit.no_masks(ds)), report)
        x_all = feats = None
        train_set = None
    else:
        trainer = None
        x_all = data_mod.as_batch(data_mod.at_size(ds.images, cfg.image_size), cfg.channels, cfg.preprocess)
        feats = backbone_features(cfg, x_all, ds.fingerprint, report) if cfg.uses_feature_cache else None
        extra = _degraded(cfg, ds, report) or sources_fit.views(cfg, ds, report)
        train_set = lambda idx: _train_set(idx, x_all, y, feats, extra)  # noqa: E731
    weights_of = lambda labels_idx: sources_fit.balance(cfg, ds, labels_idx)  # noqa: E731
    if fold_records is not None:  # --- parallel folds: computed by child processes ---
        from bt_core.models.distribute import merge_fold_records

        record["folds"], record["oof"] = merge_fold_records(fold_records, cfg.folds, train_idx, ds.fingerprint)
    elif mode == "cv":
        sub_groups = groups[train_idx] if groups is not None else None
        fold_iter = list(splits.kfold(strata[train_idx], cfg.folds, cfg.split, sub_groups, cfg.seed))
        for k, (tr, va) in enumerate(fold_iter, start=1):
            if only_fold is not None and k != only_fold:
                continue
            tr, va = train_idx[tr], train_idx[va]
            report({"event": "stage", "stage": f"fold {k}/{cfg.folds}", "fold": k, "folds": cfg.folds})
            tf0 = time.perf_counter()
            if trainer is not None:
                model, hist = trainer.fit(tr, f"fold {k}", va)
                prob = trainer.predict(model, va)
            else:
                x_tr, y_tr, f_tr = train_set(tr)
                model, hist = fit(cfg, x_tr, y_tr, x_all[va], y[va], report, f"fold {k}", verbose,
                                  (f_tr, feats[va]) if feats is not None else None, weights_of(tr))
                prob = predict_proba(model, x_all[va], cfg.batch_size)
            record["folds"].append({"fold": k, "train_idx": tr.tolist(), "val_idx": va.tolist(), "history": hist,
                                    "metrics": metrics.binary_metrics(y[va], prob),
                                    "seconds": round(time.perf_counter() - tf0, 2)})
            record["oof"]["idx"] += va.tolist()
            record["oof"]["prob"] += prob.tolist()
            record["oof"]["fold"] += [k] * len(va)
            record["oof"].setdefault("source", []).extend(src[va].tolist())
            del model
            keras.backend.clear_session()
    if only_fold is not None:  # a parallel-folds child: no final fit
        record.update(only_fold=only_fold, wall_time_s=round(time.perf_counter() - t0, 2), hardware=hardware())
        return None, record
    report({"event": "stage", "stage": "final fit", "fold": 0, "folds": cfg.folds})
    tf0 = time.perf_counter()
    if trainer is not None:
        model, hist = trainer.fit(train_idx, "final")
        prob = trainer.predict(model, test_idx)
        from bt_core.models.patch import answer_model
        model = answer_model(model)
    else:
        x_tr, y_tr, f_tr = train_set(train_idx)
        model, hist = fit(cfg, x_tr, y_tr, progress=report, stage="final", verbose=verbose,
                          features=(f_tr, None) if feats is not None else None, sample_weight=weights_of(train_idx))
        prob = predict_proba(model, x_all[test_idx], cfg.batch_size)
    record["final"] = {"history": hist, "seconds": round(time.perf_counter() - tf0, 2)}
    record["test"] = {"idx": test_idx.tolist(), "y": y[test_idx].tolist(), "prob": prob.tolist(),
                      "source": src[test_idx].tolist(), "metrics": metrics.binary_metrics(y[test_idx], prob)}
    record["test"]["per_source"] = metrics.per_source_metrics(y[test_idx], prob, src[test_idx])
    record["wall_time_s"] = round(time.perf_counter() - t0, 2)
    record["hardware"] = hardware()
    record["params"] = int(model.count_params())
    report({"event": "done", "test": record["test"]["metrics"]})
    return model, record
