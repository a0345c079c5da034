"""The Check a scan page (pages/scan.py), headless with streamlit.testing over the tiny run registry:
a shuffled DICOM series opens in order, every slice is scored by both models (a line per model), the most
suspicious slices come first, the slider moves Grad-CAM to another slice, broken input is one error line."""
import numpy as np
import pytest

from app_fixtures import build_registry
from bt_core.serving.inference import DISCLAIMER, Predictor
from conftest import blob_image
from test_images import dicom

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from test_app_pages import APP, texts  # noqa: E402


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("scan_registry")
    return build_registry(work / "runs", work)


@pytest.fixture(autouse=True)
def _runs_dir(registry, monkeypatch):
    monkeypatch.setenv("BT_RUNS_DIR", str(registry))


def dicom_series(n=5, seed=0, size=64):
    """``n`` DICOM slices of one series, in shuffled file order; slice 3 (1-based) holds a bright blob."""
    rng = np.random.default_rng(seed)
    files = []
    for k in range(n):
        pixels = blob_image(rng, size, tumour=k == 2).astype(np.uint16)
        files.append((f"IM{k:03d}.dcm", dicom(pixels, SeriesInstanceUID="1.2.826.0.1", InstanceNumber=k + 1,
                                              ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                                              ImagePositionPatient=[0, 0, 4.0 * k])))
    return [files[i] for i in rng.permutation(n)]


def scan_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90).run()
    at.switch_page("pages/scan.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_dicom_series_is_scored_slice_by_slice_with_grad_cam_on_the_chosen_slice():
    at = scan_page()
    assert DISCLAIMER in texts(at.info)
    files = [(name, blob, "application/dicom") for name, blob in dicom_series()]
    at.file_uploader(key="scan_files").set_value(files).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, texts(at.error)
    assert any("DICOM series: 5 slice" in c for c in texts(at.caption))
    slider = next(s for s in at.slider if s.label == "Slice")
    assert (slider.min, slider.max) == (1, 5)
    assert len(at.get("plotly_chart")) == 1
    ranking = at.dataframe[0].value
    assert sorted(ranking["slice"]) == [1, 2, 3, 4, 5] and list(ranking.columns[2:]) == ["Tiny CNN", "Tiny transfer"]
    assert ranking["label"].tolist()[0].endswith(f"(IM{ranking['slice'].tolist()[0] - 1:03d}.dcm)")  # anatomical order
    assert slider.value == ranking["slice"].tolist()[0]  # opens on the most suspicious slice
    assert len(at.image) == 3 and {m.label for m in at.metric} == {"CNN tumour probability",
                                                                   "Transfer tumour probability"}
    other = 1 if slider.value != 1 else 2
    slider.set_value(other).run()
    assert not at.exception
    assert f"Slice {other} of 5" in texts(at.subheader) and len(at.image) == 3
    assert DISCLAIMER in texts(at.info)


def test_broken_and_mixed_scans_are_one_error_line_and_refusals_say_why(monkeypatch):
    at = scan_page()
    series = dicom_series(3)
    other = dicom_series(1, seed=4)[0][1].replace(b"1.2.826.0.1", b"1.2.826.0.9")
    at.file_uploader(key="scan_files").set_value([(n, b, "application/dicom") for n, b in series]
                                                 + [("other.dcm", other, "application/dicom")]).run()
    assert not at.exception
    errors = texts(at.error)
    assert len(errors) == 1 and "different series" in errors[0]

    real = Predictor.answer

    def cnn_refuses(self, *args, **kwargs):
        answers = real(self, *args, **kwargs)
        for a in answers:
            a.ood, a.reason = (True, "not a brain MRI slice?") if self.name == "Tiny CNN" else (a.ood, a.reason)
        return answers

    monkeypatch.setattr(Predictor, "answer", cnn_refuses)
    at = scan_page()
    at.file_uploader(key="scan_files").set_value([(n, b, "application/dicom") for n, b in series]).run()
    assert not at.exception and not at.error
    ranking = at.dataframe[0].value
    assert (ranking["Tiny CNN"] == "refused: not a brain MRI slice?").all()
