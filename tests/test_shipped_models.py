"""The models that ship in trained_models/: complete records, size budget, and the OOD check."""
import json
from pathlib import Path

import numpy as np
import pytest

from bt_core.evaluation import probes
from bt_core import runs
from bt_core.serving.inference import Predictor

ROOT = Path(__file__).resolve().parent.parent / "trained_models"
SHIPPED = ROOT / "shipped.json"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped models yet")


@pytest.fixture(scope="module")
def predictors():
    names = json.loads(SHIPPED.read_text())
    return {kind: Predictor(ROOT / rid) for kind, rid in names.items()}


def _shipped_files() -> list[Path]:
    """What ships: the files under trained_models/ that git tracks or would add (not ignored: a locally
    converted backbone, _jobs/, temp folders), or every file where git is not at hand."""
    import subprocess

    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "."],
                             cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return [p for p in ROOT.rglob("*") if p.is_file()]
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def test_budget_and_records():
    files = _shipped_files()
    assert ROOT / "shipped.json" in files and len(files) > 5
    total = sum(p.stat().st_size for p in files)
    assert total <= 40e6, f"trained_models/ is {total / 1e6:.1f} MB"
    assert (ROOT / "README.md").is_file()
    for kind, rid in json.loads(SHIPPED.read_text()).items():
        rec = runs.load_run(ROOT / rid)
        assert rec["config"]["split"] == "group" and len(rec["folds"]) >= 2
        assert len(rec["test"]["prob"]) == len(rec["test"]["idx"]) > 0
        assert {"calibration", "operating_point", "ood"} <= set(rec)


def test_both_models_answer_and_explain_an_example(predictors):
    from PIL import Image

    img = np.asarray(Image.open(sorted((ROOT.parent / "examples").glob("*.png"))[0]).convert("L"))
    from bt_core.serving import lite

    for pred in predictors.values():
        if lite.interpreter_class() is not None:  # the shipped LiteRT export is current (tools/export_lite.py)
            assert pred.engine == "litert", f"{pred.record['id']}: rerun tools/export_lite.py"
        ans = pred.answer([img])[0]
        assert 0 <= ans.prob <= 1
        heat = pred.explain([img])[0]
        assert heat.shape == (pred.config.image_size,) * 2 and np.isfinite(heat).all()
        # one pass for answer, out-of-distribution score and heatmap gives the same as three
        (one,), maps = pred.answer_and_explain([img])
        assert one.prob == pytest.approx(ans.prob, abs=1e-5) and one.decision == ans.decision
        assert one.ood_score == pytest.approx(ans.ood_score, rel=1e-4) and one.ood == ans.ood
        np.testing.assert_allclose(maps[0], heat, atol=1e-5)


def test_out_of_distribution_check_flags_every_non_brain_probe(predictors):
    probe = probes.non_brain_images()
    assert len(probe) >= 20
    pred = predictors["transfer"]
    flags = [a.ood for a in pred.answer([im for _, im in probe], [n for n, _ in probe])]
    missed = [n for (n, _), f in zip(probe, flags) if not f]
    assert not missed, f"not flagged: {missed}"
