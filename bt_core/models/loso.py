"""Leave-one-source-out: for each source family, train on all the others and predict it.

The headline protocol of a model meant for hospitals it never saw: a held-out family is one no
image of which (no patient, no sequence, no scanner) was trained on. Families come from
:mod:`bt_core.data.sources` (``lgg_flair``, ``lgg_t1c`` and ``lgg_t1pre`` are one family, ``lgg``).
Every fit uses the configuration given (``TrainConfig``), on every image of the other families;
the patch model (``model="patch"``) reuses one cache of backbone activations for all of them.

The record (``mode="loso"``) holds, per held-out family, the indices, labels, sources and
predicted probabilities of its images, and per-source metrics at threshold 0.5. Saved in the
run registry like any run, without a model (the shipped model is the ``cv`` run on all sources).
"""
from __future__ import annotations

import time
from typing import Callable

import keras
import numpy as np

from bt_core.config import TrainConfig
from bt_core.data import folders
from bt_core.errors import ConfigError
from bt_core.evaluation import metrics
from bt_core.models import runtime, sources_fit, training

Progress = Callable[[dict], None]


def leave_one_source_out(cfg: TrainConfig, ds: folders.Dataset, masks=None, progress: Progress | None = None,
                         only: list[str] | None = None) -> dict:
    """Train on all families but one, predict it, for every family (or those in ``only``) -> record."""
    cfg.validate()
    report = progress or (lambda e: None)
    fam = ds.family_of()
    families = [f for f in dict.fromkeys(fam.tolist()) if not only or f in only]
    if len(set(fam.tolist())) < 2:
        raise ConfigError("leave-one-source-out needs at least two source families")
    if only and len(families) != len(set(only)):
        raise ConfigError(f"unknown family in {only}; the data has {', '.join(dict.fromkeys(fam.tolist()))}")
    t0 = time.perf_counter()
    y, src = ds.labels, ds.source_of()
    record = {"mode": "loso", "config": cfg.to_dict(),
              "data": {"root": ds.root, "classes": list(ds.classes), "n": len(y), "fingerprint": ds.fingerprint,
                       "paths": ds.paths, "labels": y.tolist(), "sources": sources_fit.sources_summary(ds),
                       "source": src.tolist()},
              "held_out": {}}
    trainer = x_all = None
    if cfg.model == "patch":
        from bt_core.models.patch_training import PatchTrainer

        trainer = PatchTrainer(cfg, ds, *(masks if masks is not None else sources_fit.no_masks(ds)), report)
    else:
        from bt_core import data as data_mod

        x_all = data_mod.as_batch(data_mod.at_size(ds.images, cfg.image_size), cfg.channels, cfg.preprocess)
        extra = sources_fit.views(cfg, ds, report)
    for k, held in enumerate(families, start=1):
        tr, te = np.flatnonzero(fam != held), np.flatnonzero(fam == held)
        if len(set(y[tr].tolist())) < 2:
            raise ConfigError(f"without {held} the other sources lack a class: cannot train")
        report({"event": "stage", "stage": f"held out {held} ({k}/{len(families)})", "fold": k, "folds": len(families)})
        tf0 = time.perf_counter()
        if trainer is not None:
            model, hist = trainer.fit(tr, f"without {held}")
            prob = trainer.predict(model, te)
        else:
            x_tr, y_tr, _ = training._train_set(tr, x_all, y, None, extra)
            model, hist = training.fit(cfg, x_tr, y_tr, progress=report, stage=f"without {held}",
                                       sample_weight=sources_fit.balance(cfg, ds, tr))
            prob = training.predict_proba(model, x_all[te], cfg.batch_size)
        record["held_out"][held] = {
            "idx": te.tolist(), "y": y[te].tolist(), "prob": prob.tolist(), "source": src[te].tolist(),
            "trained_on": {s: int((src[tr] == s).sum()) for s in np.unique(src[tr])},
            "per_source": metrics.per_source_metrics(y[te], prob, src[te]), "history": hist,
            "seconds": round(time.perf_counter() - tf0, 2)}
        del model
        keras.backend.clear_session()
    record["wall_time_s"] = round(time.perf_counter() - t0, 2)
    record["hardware"] = runtime.hardware()
    return record
