"""Smoke test of bench/run.py: a cheap subset of rows on a tiny generated folder prints one table."""
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import make_folder

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench" / "run.py"
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def _run(args, tmp_path, timeout=240):
    env = {**os.environ, "BT_CACHE_DIR": str(tmp_path / "cache"), "BT_RUNS_DIR": str(tmp_path / "runs"),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)


def _table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines]
    return lines, {r[1]: r for r in rows[2:]}


def test_quick_decode_and_predict_rows_print_one_table_with_numbers(tmp_path):
    folder = make_folder(tmp_path / "data", n_per_class=4, size=64)
    out = tmp_path / "bench.md"
    proc = _run(["--quick", "--only", "decode,predict", "--data", str(folder), "--image-size", "64",
                 "--repeats", "2", "--out", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines, rows = _table(proc.stdout)
    assert lines[0] == "| section | measure | value | unit | notes |"
    assert sum(line.startswith("| section |") for line in lines) == 1  # one table
    assert len(lines) == len(proc.stdout.strip().splitlines())  # nothing but the table on stdout
    assert "[bench" in proc.stderr  # progress goes to stderr

    assert rows["Keras backend"][2] in ("tensorflow", "jax", "torch")
    assert int(rows["cores"][2]) >= 1 and rows["CPU"][2]
    for name in ("decode + resize, cold (empty cache dir)", "decode + resize, cached (second call)"):
        assert rows[name][3] == "images/s" and float(rows[name][2]) > 0
    assert rows["decode + resize, cold (empty cache dir)"][4].startswith("8 files -> 64x64")
    for kind in ("compact_cnn", "transfer"):
        for what in ("predict", "predict_on_batch", "Grad-CAM"):
            value = rows[f"{what} 1 image, {kind}"][2]
            assert re.fullmatch(f"{NUMBER} / {NUMBER}", value), value
            p50, p95 = (float(v) for v in value.split(" / "))
            assert 0 < p50 <= p95
    assert not any("failed" in name for name in rows)
    assert not any(k in rows for k in ("paper_cnn", "RSS after loading both predictors (this process)"))
    assert out.read_text().strip().endswith(proc.stdout.strip())


def test_bad_row_group_is_one_line_and_status_2(tmp_path):
    proc = _run(["--only", "decode,warp"], tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown row group(s) warp" in proc.stderr.strip().splitlines()[-1]


def test_quick_estimate_adds_training_and_validation_passes(tmp_path):
    proc = _run(["--quick", "--only", "train,estimate", "--image-size", "48", "--synthetic"],
                tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, rows = _table(proc.stdout)
    trained, evaluated = 30 * (3 * 1600 + 2400), 30 * 2400 + 2400 + 600
    for kind in ("paper_cnn", "compact_cnn"):
        train, val = float(rows[kind][2]), float(rows[f"{kind}, validation pass"][2])
        assert train > 0 and val > 0 and rows[f"{kind}, validation pass"][3] == "images/s"
        estimate = float(rows[f"paper protocol time, {kind}"][2])
        assert abs(estimate - (trained / train + evaluated / val) / 60) <= 0.02 * estimate
        assert f"+ {evaluated} images / validation pass" in rows[f"paper protocol time, {kind}"][4]
