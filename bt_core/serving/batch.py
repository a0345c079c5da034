"""Batch: answer a batch of uploaded slices with every shipped model, as the *Check slices* page shows it.

:func:`score_batch` decodes each file (a broken one becomes a one-line error, never an exception),
asks every model for its answer and heatmap (Grad-CAM by default, or Grad-CAM++), memoised in a dict
the caller keeps (the page keeps it in the session's state: one digest per file's content), applies
each model's threshold, and passes one model's refusal on to the others: a refusal is about the image,
so every model's answer for it says who refused and why. :func:`batch_table` is the downloadable table.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

import numpy as np
import pandas as pd

from bt_core.data import images
from bt_core.errors import BTError
from bt_core.runs import SHIPPED_KINDS
from bt_core.serving.inference import REASON_FEATURES

MEMO_ENTRIES = 256  # model outputs kept per memo (one per image, model and heatmap method)
COLUMNS = ["name", "model", "prob", "decision", "threshold", "ood", "reason"]


def short_error(err: BaseException) -> str:
    """One line for an error: our own messages as they are, anything else with its type, cut at 200 characters."""
    return str(err) if isinstance(err, BTError) else f"{type(err).__name__}: {err}"[:200]


def decode_all(files: list[tuple[str, bytes]]):
    """``(name, bytes)`` pairs -> (``(content digest, Loaded image)`` pairs, ``(name, message)`` errors).

    Never raises on a bad file: one unreadable file must not cost the batch."""
    loaded, errors = [], []
    for raw_name, data in files:
        name = images.safe_name(raw_name)
        try:
            img = images.load_image(data, name=name)
        except BTError as err:
            errors.append((name, str(err)))
            continue
        except Exception as err:  # noqa: BLE001 - one bad file must not cost the batch
            errors.append((name, f"{name}: could not be read ({type(err).__name__})"))
            continue
        loaded.append((hashlib.sha256(data).hexdigest(), img))
    return loaded, errors


def _remember(memo: dict, key, value) -> None:
    memo[key] = value
    while len(memo) > MEMO_ENTRIES:
        memo.pop(next(iter(memo)))


def model_outputs(predictor, kind: str, loaded, method: str, memo: dict) -> tuple[dict, str | None]:
    """``{digest: (Answer at the model's own threshold, heatmap)}`` for ``loaded``, from ``memo`` where it has
    them -> (outputs, one-line error or None). A model that fails gives the error, not an exception."""
    run = predictor.record.get("dir", kind)
    todo = [(d, img) for d, img in loaded if (d, run, method) not in memo]
    error = None
    if todo:
        try:
            answers, heatmaps = predictor.answer_and_explain([img.pixels for _, img in todo],
                                                             [img.name for _, img in todo], method=method)
            for (digest, _), ans, heat in zip(todo, answers, heatmaps):
                _remember(memo, (digest, run, method), (ans, np.asarray(heat, np.float32)))
        except Exception as err:  # noqa: BLE001 - show it, keep the other model
            error = f"The {SHIPPED_KINDS.get(kind, kind)} model could not answer: {short_error(err)}"
    return {d: memo[(d, run, method)] for d, _ in loaded if (d, run, method) in memo}, error


def share_refusals(results: list[dict]) -> None:
    """Pass one model's refusal of an image on to the others (in place): ``refused_by`` {kind: reason}, and every
    answer of a refused image says which model refused it and why."""
    for res in results:
        res["refused_by"] = {k: a.reason or REASON_FEATURES for k, a in res["answers"].items() if a.ood}
        if res["refused_by"]:
            first, why = next(iter(res["refused_by"].items()))
            passed_on = f"the {SHIPPED_KINDS.get(first, first)} model refused this image: {why}"
            res["answers"] = {k: a if a.ood else dataclasses.replace(a, ood=True, reason=passed_on)
                              for k, a in res["answers"].items()}


def score_batch(files: list[tuple[str, bytes]], predictors: dict, thresholds: dict, method: str = "gradcam",
                memo: dict | None = None, progress: Callable[[float, str], None] | None = None):
    """Decode and score a batch -> (results, errors).

    ``results``: one dict per readable image: ``name``, ``pixels`` (uint8), ``notes``, ``answers[kind]`` (an
    Answer at ``thresholds[kind]``, default the model's own, with the image's notes), ``heatmaps[kind]`` and
    ``refused_by``. ``errors``: ``(file name, message)`` per unreadable file, ``(None, message)`` per model that
    failed. ``progress(share done, text)`` is called before each step."""
    memo = {} if memo is None else memo
    steps = 1 + len(predictors)
    report = progress or (lambda done, text: None)
    report(0.0, f"Reading {len(files)} file(s)...")
    loaded, errors = decode_all(files)
    results = [{"name": img.name, "pixels": img.pixels, "notes": list(img.notes), "answers": {}, "heatmaps": {}}
               for _, img in loaded]
    for step, (kind, predictor) in enumerate(predictors.items(), start=1):
        report(step / steps, f"{SHIPPED_KINDS.get(kind, kind)}: scoring and explaining {len(loaded)} image(s)...")
        outputs, error = model_outputs(predictor, kind, loaded, method, memo)
        if error:
            errors.append((None, error))
        thr = float(thresholds.get(kind, predictor.threshold))
        for res, (digest, _) in zip(results, loaded):
            if digest in outputs:
                ans, heat = outputs[digest]
                res["answers"][kind] = dataclasses.replace(ans, name=res["name"], threshold=thr,
                                                           tumour=bool(ans.prob >= thr), notes=res["notes"])
                res["heatmaps"][kind] = heat
    share_refusals(results)
    return results, errors


def batch_table(results, predictors, errors=()) -> pd.DataFrame:
    """One row per image and model (name, model, prob, decision, threshold, ood, reason), then unreadable files.

    No probability is given where a check refused the image (``ood``): there is no answer."""
    rows = [{"name": r["name"], "model": predictors[k].name, "prob": None if a.ood else round(a.prob, 6),
             "decision": a.decision, "threshold": a.threshold, "ood": a.ood, "reason": a.reason}
            for r in results for k, a in r["answers"].items()]
    rows += [{"name": name, "model": "", "prob": None, "decision": f"not read: {msg.removeprefix(name + ': ')}",
              "threshold": None, "ood": None, "reason": None} for name, msg in errors if name is not None]
    return pd.DataFrame(rows, columns=COLUMNS)
