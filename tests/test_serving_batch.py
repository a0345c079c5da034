"""bt_core.serving.batch: a batch of uploads answered by every model, bad files and failing models included."""
import io

import numpy as np
from PIL import Image

from bt_core.serving import batch
from bt_core.serving.inference import REASON_STATISTICS, Answer


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


class FakePredictor:
    """Answers from the image's mean brightness; refuses (statistics check) a white image; counts its calls."""

    def __init__(self, name, fail=False):
        self.name, self.fail, self.calls, self.threshold = name, fail, 0, 0.5
        self.record = {"dir": f"runs/{name}"}

    def answer_and_explain(self, pixels_list, names, method="gradcam"):
        self.calls += 1
        if self.fail:
            raise RuntimeError("weights missing")
        answers = [Answer(name=n, prob=float(p.mean()) / 255, threshold=0.5, tumour=bool(p.mean() >= 128),
                          ood=bool(p.mean() > 250), reason=REASON_STATISTICS if p.mean() > 250 else None)
                   for p, n in zip(pixels_list, names)]
        return answers, [np.ones(p.shape, np.float32) for p in pixels_list]


def test_a_batch_is_answered_by_every_model_and_a_broken_file_is_one_line():
    files = [("dark.png", _png(40)), ("bright.png", _png(200)), ("broken.png", b"not an image")]
    preds = {"cnn": FakePredictor("cnn"), "transfer": FakePredictor("transfer")}
    seen = []
    results, errors = batch.score_batch(files, preds, {"cnn": 0.5, "transfer": 0.9},
                                        progress=lambda done, text: seen.append(done))
    assert [r["name"] for r in results] == ["dark.png", "bright.png"]
    assert len(errors) == 1 and errors[0][0] == "broken.png" and "\n" not in errors[0][1]
    bright = results[1]["answers"]
    assert bright["cnn"].tumour and not bright["transfer"].tumour  # each model at its own threshold
    assert bright["transfer"].threshold == 0.9 and seen == [0.0, 1 / 3, 2 / 3]
    table = batch.batch_table(results, preds, errors)
    assert list(table.columns) == batch.COLUMNS and len(table) == 5
    assert table.iloc[-1]["decision"].startswith("not read:")


def test_answers_are_memoised_and_a_failing_model_costs_only_itself():
    memo = {}
    preds = {"cnn": FakePredictor("cnn", fail=True), "transfer": FakePredictor("transfer")}
    files = [("a.png", _png(90))]
    results, errors = batch.score_batch(files, preds, {}, memo=memo)
    assert errors == [(None, f"The {batch.SHIPPED_KINDS['cnn']} model could not answer: RuntimeError: weights missing")]
    assert set(results[0]["answers"]) == {"transfer"}
    batch.score_batch(files, preds, {}, memo=memo)
    assert preds["transfer"].calls == 1  # the second time from the memo
    batch.score_batch(files, preds, {}, method="gradcam++", memo=memo)
    assert preds["transfer"].calls == 2  # another heatmap method is another entry


def test_one_models_refusal_holds_for_every_model():
    preds = {"cnn": FakePredictor("cnn"), "transfer": FakePredictor("transfer")}
    results, _ = batch.score_batch([("white.png", _png(255))], preds, {})
    res = results[0]
    assert res["refused_by"] == {"cnn": REASON_STATISTICS, "transfer": REASON_STATISTICS}
    table = batch.batch_table(results, preds)
    assert table["prob"].isna().all() and table["ood"].all()
    one = [{"name": "x", "answers": {"cnn": Answer("x", 0.9, 0.5, True, ood=True, reason=REASON_STATISTICS),
                                     "transfer": Answer("x", 0.2, 0.5, False)}}]
    batch.share_refusals(one)
    assert one[0]["answers"]["transfer"].ood and "refused this image" in one[0]["answers"]["transfer"].reason
