"""The dashboard's pages, driven headless with streamlit.testing (AppTest) over a tiny run registry.

The registry (tests/app_fixtures.py) holds two runs trained in seconds on generated images; every
test points the app at it through ``$BT_RUNS_DIR``. Models load once per process (cache_resource).
"""
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app_fixtures import APP, CNN_ID, CNN_THRESHOLD, TRANSFER_ID, build_registry, open_app, texts  # noqa: F401
# (APP and texts are imported from here by tests/test_app_scan.py)
from bt_core.serving.inference import DISCLAIMER, REASON_STATISTICS, Predictor
from conftest import blob_image

pytest.importorskip("streamlit.testing.v1")

PAGES = ["pages/diagnose.py", "pages/explore.py", "pages/roc.py", "pages/train.py", "pages/score.py", "pages/scan.py",
         "pages/unseen.py"]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("app_registry")
    return build_registry(work / "runs", work)


@pytest.fixture(autouse=True)
def _runs_dir(registry, monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(registry))


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page):
    at = open_app(page)
    if page != "pages/train.py":
        assert DISCLAIMER in texts(at.info)
    assert not at.error, texts(at.error)


@pytest.fixture
def fresh_caches():
    import streamlit as st

    st.cache_data.clear()  # the pages' cached evidence must not leak between tests
    yield
    st.cache_data.clear()


def test_diagnose_answers_both_models_and_reports_a_bad_file_in_the_same_batch(registry, tmp_path, monkeypatch,
                                                                              fresh_caches):
    from bt_core import runs
    from bt_core.evaluation import held_out

    # a leave-one-source-out record of the tiny CNN's recipe: LGG FLAIR 3 of 4 right at 0.4, IXI 1 of 2 right
    cnn = json.loads((registry / CNN_ID / "run.json").read_text())
    held = {"lgg": {"y": [1, 1, 0, 0], "prob": [0.9, 0.3, 0.2, 0.1], "source": ["lgg_flair"] * 4},
            "ixi": {"y": [0, 0], "prob": [0.2, 0.6], "source": ["ixi_t1"] * 2}}
    runs.save_run({"mode": "loso", "status": "finished", "config": cnn["config"], "held_out": held}, None,
                  tmp_path / "evidence", run_id="20261207-000000-cnn-loso")
    monkeypatch.setattr(held_out, "REPORTS_RUNS", tmp_path / "evidence")
    at = open_app()
    assert at.slider(key="thr_cnn").value == pytest.approx(CNN_THRESHOLD)  # the run's operating threshold
    assert at.slider(key="thr_transfer").value == pytest.approx(0.5)
    good = png_bytes(blob_image(np.random.default_rng(5), 96, tumour=True))
    at.file_uploader(key="uploads").set_value([("scan one.png", good, "image/png"),
                                               ("garbage.png", b"\x89PNG\r\n\x1a\n not really", "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = texts(at.error)
    assert len(errors) == 1 and "garbage" in errors[0] and "scan" not in errors[0]
    probs = {m.label: m.value for m in at.metric}
    for label in ("CNN tumour probability", "Transfer tumour probability"):
        value = float(probs[label].rstrip("%"))
        assert 0.0 <= value <= 100.0
    assert len(at.image) == 3  # original | CNN overlay | transfer overlay
    table = at.dataframe[0].value
    assert table.loc[table["name"] == "scan one.png", "model"].tolist() == ["Tiny CNN", "Tiny transfer"]
    assert table.loc[table["name"] == "garbage.png", "decision"].str.startswith("not read").all()
    assert {"png_0_cnn", "png_0_transfer", "csv"} <= {b.key for b in at.download_button}
    assert DISCLAIMER in texts(at.info)
    # under the answers: what each model's answers met on sources it never saw, at the threshold in use
    note = next(t for t in texts(at.markdown) if t.startswith("- CNN"))
    assert "- CNN: on 2 sources it never saw (leave-one-source-out run `20261207-000000-cnn-loso`, at threshold 0.40" in note
    assert "right on 50 to 75% of their slices, found 50 to 50% of tumour slices, cleared 50 to 100%" in note
    assert "weakest on ixi_t1 (50% right)" in note
    assert "- Transfer: not yet measured on a source it never saw" in note  # no run of its recipe

    at.slider(key="thr_cnn").set_value(0.0).run()  # everything is a tumour at threshold 0
    assert any("At threshold 0.00: **tumour**" in t for t in texts(at.markdown))
    note = next(t for t in texts(at.markdown) if t.startswith("- CNN"))
    assert "at threshold 0.00" in note and "found 100 to 100% of tumour slices, cleared 0 to 0%" in note
    at.slider(key="thr_cnn").set_value(1.0)
    at.radio(key="method").set_value("gradcam++").run()
    assert not at.exception and len(at.image) == 3
    assert any("At threshold 1.00: **no tumour**" in t for t in texts(at.markdown))


def test_diagnose_example_picker_and_out_of_distribution_warning(monkeypatch):
    real = Predictor.answer_and_explain

    def transfer_says_ood(self, *args, **kwargs):
        answers, maps = real(self, *args, **kwargs)
        for a in answers:
            a.ood = self.record["id"] == TRANSFER_ID
            a.reason = REASON_STATISTICS if a.ood else None
        return answers, maps

    monkeypatch.setattr(Predictor, "answer_and_explain", transfer_says_ood)
    at = open_app()
    picker = at.multiselect(key="examples")
    assert picker.options and all(o.endswith(".png") for o in picker.options)
    picker.set_value([picker.options[0]]).run()
    assert not at.exception and not at.error
    # one model's flag is about the image, so neither model gives a confident answer; each says who refused and why
    warnings = [w for w in texts(at.warning) if REASON_STATISTICS in w]
    assert len(warnings) == 2
    assert any(w.startswith("**Transfer (Tiny transfer) refused: not a brain MRI slice?.**") for w in warnings)
    assert any(w.startswith("**CNN (Tiny CNN): no answer — the Transfer model refused this image") for w in warnings)
    assert [e.label for e in at.expander] == ["Show the answer anyway (for teaching; not reliable)"] * 2
    assert not [m.label for m in at.metric if "tumour probability" in m.label]
    assert len(at.image) == 1  # the slice itself, no heatmap for a no-answer
    table = at.dataframe[0].value.set_index("model")
    for model in ("Tiny transfer", "Tiny CNN"):
        assert bool(table.loc[model, "ood"]) and pd.isna(table.loc[model, "prob"])
    assert table.loc["Tiny transfer", "reason"] == REASON_STATISTICS
    assert table.loc["Tiny CNN", "reason"].startswith("the Transfer model refused")


def test_diagnose_keeps_the_other_model_when_one_fails_to_load(registry, tmp_path, monkeypatch):
    broken = tmp_path / "runs"
    shutil.copytree(registry / CNN_ID, broken / CNN_ID)
    shutil.copytree(registry / TRANSFER_ID, broken / TRANSFER_ID)
    (broken / TRANSFER_ID / "model.keras").write_bytes(b"not a keras file")
    (broken / "shipped.json").write_text(json.dumps({"cnn": CNN_ID, "transfer": TRANSFER_ID}))
    monkeypatch.setenv("BT_RUNS_DIR", str(broken))
    at = open_app()
    assert any("Transfer model" in e and "could not be loaded" in e for e in texts(at.error))
    at.file_uploader(key="uploads").set_value(("a.png", png_bytes(blob_image(np.random.default_rng(1), 64)),
                                               "image/png")).run()
    assert not at.exception
    assert [m.label for m in at.metric] == ["CNN tumour probability"]


def test_explore_shows_fold_tables_and_the_t_test_sentences():
    at = open_app("pages/explore.py")
    runs = at.multiselect(key="runs")
    assert len(runs.value) == 2 and all("random split (leaky)" in v for v in runs.value)
    tables = [d.value for d in at.dataframe]
    folds = [t for t in tables if "Fold 1" in t.index]
    assert len(folds) == 2 and all(list(t.index[-2:]) == ["Mean", "Variance (%²)"] for t in folds)
    assert all(str(v).endswith("%") for v in folds[0].loc["Fold 1"])
    sentences = [t for t in texts(at.markdown) if "t-test" in t]
    assert len(sentences) == 2 and all(" A " in s and " B" in s and "accuracy" in s for s in sentences)
    at.selectbox(key="cmp_key").set_value("sensitivity").run()
    assert any("sensitivity" in t for t in texts(at.markdown) if "t-test" in t)


def test_roc_shows_auc_and_the_threshold_moves_sensitivity():
    at = open_app("pages/roc.py")
    aucs = [m for m in at.metric if m.label.startswith("AUC")]
    assert len(aucs) == 2 and all(0.0 <= float(m.value) <= 1.0 for m in aucs)

    def sensitivity():
        return next(m.value for m in at.metric if m.label.startswith("Sensitivity — CNN · "))

    at.slider(key="threshold").set_value(0.0).run()
    assert sensitivity() == "100.0%"
    at.slider(key="threshold").set_value(1.0).run()
    assert sensitivity() != "100.0%"
    assert not at.exception
    # the two runs share their test images: McNemar and DeLong are computed, each with a sentence
    verdicts = [t for t in texts(at.markdown) if t.startswith(("**McNemar", "**DeLong"))]
    assert len(verdicts) == 2
    assert any(m.label.startswith("ECE") for m in at.metric)


def multi_source_registry(registry, tmp_path) -> Path:
    """The tiny registry plus a copy of the CNN run that says it was trained and tested on two sources."""
    root = tmp_path / "runs"
    shutil.copytree(registry, root)
    shutil.copytree(registry / CNN_ID, root / "multi-src")
    record = json.loads((root / "multi-src" / "run.json").read_text())
    n, test = record["data"]["n"], record["test"]
    record["data"]["sources"] = [{"name": "alpha", "family": "a", "n": n - n // 2, "yes": 1, "no": 1},
                                 {"name": "beta", "family": "b", "n": n // 2, "yes": 1, "no": 1}]
    record["data"]["source"] = ["alpha" if i % 2 else "beta" for i in range(n)]
    test["source"] = ["alpha" if i % 2 else "beta" for i in range(len(test["y"]))]
    record["id"], record["created"] = "multi-src", "2031-01-02T03:04:05"
    (root / "multi-src" / "run.json").write_text(json.dumps(record))
    return root


def test_comparisons_open_on_the_shipped_runs_with_short_names_and_per_source_tables(registry, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(multi_source_registry(registry, tmp_path)))
    for page in ("pages/roc.py", "pages/explore.py"):
        at = open_app(page)
        picker = at.multiselect(key="runs")
        assert len(picker.options) == 3
        assert [v.split(" · ")[0] for v in picker.value] == ["CNN", "transfer Lite0"]  # the shipped pair
        assert all(v.endswith("— random split (leaky)") and " · data · " in v for v in picker.value)
        assert [e.label for e in at.expander][:1] == ["What these runs are"]
        assert any("Tiny CNN" in t and "shipped model" in t for t in texts(at.markdown))
        newest = next(o for o in picker.options if "2031-01-02" in o)
        picker.set_value([newest, picker.value[0]]).run()
        assert not at.exception, [e.value for e in at.exception]
        tables = [d.value for d in at.dataframe if "source" in d.value.columns]
        assert len(tables) == 1 and sorted(tables[0]["source"]) == ["alpha", "beta"]
        if page == "pages/roc.py":
            assert tables[0]["n"].sum() == len(json.loads((registry / CNN_ID / "run.json").read_text())["test"]["y"])
            roc = at.get("plotly_chart")[0].proto
            figure = json.loads(roc.spec if hasattr(roc, "spec") else roc.figure.spec)
            assert figure["layout"]["xaxis"]["range"] == [0, 1] and figure["layout"]["yaxis"]["scaleanchor"] == "x"
        else:
            assert {"images", "trained on", "out-of-fold accuracy"} <= set(tables[0].columns)


@pytest.mark.parametrize("page", PAGES[:3])
def test_pages_explain_an_empty_registry(page, tmp_path, monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(tmp_path / "no_runs_yet"))
    at = open_app(page)
    shown = texts(at.error) + texts(at.info)
    assert any("No shipped models" in t or "No cross-validated runs" in t or "No runs with test-set" in t
               for t in shown), shown


def test_every_page_imports_the_routing_of_pages_common():
    """pages/common.py, on import, sends a first request straight to /PAGE through st.navigation
    (tests/test_browser.py checks it for /explore); a page that skipped it would show the old sidebar."""
    import ast

    root = Path(__file__).resolve().parent.parent
    for rel in PAGES:
        tree = ast.parse((root / rel).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert "pages.common" in imported, rel
