"""Score a whole scan slice by slice, and rank its slices from the most suspicious.

:func:`score_slices` gives each model's :class:`~bt_core.serving.inference.Answer` for every slice of a
volume (:mod:`bt_core.data.series`), in batches, with an optional ``progress(fraction, text)``
callback. :func:`rank_slices` orders the slices: the highest tumour probability among the models that
answered first; slices every model refused come last. Defaults: batches of ``BATCH`` (16) slices.
Decision support, not a diagnosis.
"""
from __future__ import annotations

import math

BATCH = 16


def score_slices(predictors: dict, slices, labels=None, batch: int = BATCH, progress=None) -> dict[str, list]:
    """``{kind: [Answer per slice]}`` for ``{kind: Predictor}``; answers at each model's own threshold."""
    slices = list(slices)
    labels = list(labels) if labels is not None else [f"slice {i + 1}" for i in range(len(slices))]
    report = progress or (lambda done, text: None)
    steps = max(1, len(predictors) * math.ceil(len(slices) / batch))
    out, step = {}, 0
    for kind, predictor in predictors.items():
        answers = []
        for start in range(0, len(slices), batch):
            report(step / steps, f"{getattr(predictor, 'name', kind)}: slices {start + 1}-"
                                 f"{min(start + batch, len(slices))} of {len(slices)}")
            answers += predictor.answer(slices[start:start + batch], labels[start:start + batch])
            step += 1
        out[kind] = answers
    report(1.0, "done")
    return out


def suspicion(answers_by_kind: dict[str, list], index: int) -> float | None:
    """The slice's highest tumour probability among the models that answered it; None if all refused."""
    probs = [ans[index].prob for ans in answers_by_kind.values() if index < len(ans) and not ans[index].ood]
    return max(probs) if probs else None


def rank_slices(answers_by_kind: dict[str, list]) -> list[int]:
    """Slice indices, most suspicious first (ties: anatomical order); refused slices last, in order."""
    n = max((len(a) for a in answers_by_kind.values()), default=0)
    scores = [suspicion(answers_by_kind, i) for i in range(n)]
    return sorted(range(n), key=lambda i: (scores[i] is None, -(scores[i] or 0.0), i))
