"""The "Score your data" page (pages/score.py), driven headless with AppTest over a one-run registry."""
import pytest

from app_fixtures import open_app, texts
from bt_core.serving.inference import DISCLAIMER
from conftest import make_folder
from score_fixtures import build_score_registry, labelled_zip, make_zip

pytest.importorskip("streamlit.testing.v1")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("score_registry")
    return build_score_registry(work / "runs", work)


@pytest.fixture(autouse=True)
def _env(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(registry))
    monkeypatch.setenv("BT_DATA_ROOTS", str(tmp_path / "roots"))


def page():
    return open_app("pages/score.py")


def upload(at, name, blob):
    at.file_uploader(key="score_zip").set_value([(name, blob, "application/zip")]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_zip_of_both_classes_gets_tiles_with_cis_roc_and_a_table_misses_first():
    at = upload(page(), "mine.zip", labelled_zip(4, extra={"mine/no/notes.txt": b"x"}))
    assert not at.error, texts(at.error)
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["Accuracy", "Sensitivity", "Specificity", "AUC"]
    assert any(t.startswith("95% CI") for t in texts(at.caption))
    assert DISCLAIMER in texts(at.info)
    assert any("Scored 8 images" in t for t in texts(at.success))
    table = at.dataframe[0].value
    assert len(table) == 8 and table["thumbnail"].str.startswith("data:image/png;base64,").all()
    correct = table["correct"].tolist()
    assert correct == sorted(correct)  # misses (False) first
    assert len(at.get("plotly_chart")) == 3  # ROC, confusion matrix, reliability diagram
    assert "1 file(s) skipped" in [e.label for e in at.expander]


def test_only_no_images_show_specificity_and_accuracy_without_roc():
    at = upload(page(), "healthy.zip", labelled_zip(3, classes=("no",)))
    assert not at.error, texts(at.error)
    assert [m.label for m in at.metric] == ["Accuracy", "Specificity"]
    assert any("ROC curve and AUC need both classes" in t for t in texts(at.info))
    assert len(at.get("plotly_chart")) == 2


@pytest.mark.parametrize("name, blob, words", [
    ("evil.zip", make_zip({"../evil/yes/a.png": b"x"}), "unsafe path"),
    ("fake.zip", b"not a zip at all", "not a zip archive"),
])
def test_bad_archives_are_one_error_line(name, blob, words):
    at = upload(page(), name, blob)
    errors = texts(at.error)
    assert len(errors) == 1 and words in errors[0] and "\n" not in errors[0]
    assert not at.metric


def test_a_one_class_folder_under_the_allowed_roots(tmp_path):
    healthy = make_folder(tmp_path / "roots" / "healthy", n_per_class=3, size=48, classes=("no",))
    at = page()
    at.radio(key="score_mode").set_value("A folder on the server").run()
    options = at.selectbox(key="score_folder").options
    assert str(healthy.resolve()) in options
    at.selectbox(key="score_folder").set_value(str(healthy.resolve())).run()
    assert not at.exception and not at.error, texts(at.error)
    assert [m.label for m in at.metric] == ["Accuracy", "Specificity"]
