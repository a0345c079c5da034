"""Sweeps (bt_core.models.sweep, ``python -m bt_core sweep``): the grid, and a real two-point sweep on local Ray."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bt_core import runs
from bt_core.errors import ConfigError
from bt_core.models import sweep

ROOT = Path(__file__).resolve().parent.parent


def test_grid_expansion_ids_and_argv(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('command = "cv"\n[base]\ndata = ["a", "b"]\nmodel = "transfer"\nmirror = true\naugment = false\n'
                 '[grid]\nlr = [1e-4, 3e-4]\nseed = [1, 2]\n')
    spec = sweep.load_spec(f, ["seed=7", "batch-size=16,32"])
    assert spec["base"]["seed"] == 7 and spec["grid"] == {"lr": [1e-4, 3e-4], "batch_size": [16, 32]}
    name, configs = sweep.expand(spec, known={"data", "model", "mirror", "augment", "lr", "seed", "batch_size"})
    assert len(configs) == 4 and len({c.config_id for c in configs}) == 4 and name.startswith("sweep-")
    assert sweep.expand(sweep.load_spec(f, ["seed=7", "batch-size=16,32"]))[1][0].config_id == configs[0].config_id
    argv = configs[0].argv
    assert argv[:4] == ["--data", "a", "--data", "b"] and "--mirror" in argv and "--augment" not in argv
    assert argv[argv.index("--batch-size") + 1] == "16" and float(argv[argv.index("--lr") + 1]) == 1e-4
    with pytest.raises(ConfigError, match="unknown option 'lrr'"):
        sweep.expand(sweep.load_spec(f, ["lrr=1"]), known={"data", "model", "mirror", "augment", "lr", "seed", "batch_size"})
    with pytest.raises(ConfigError, match="set by the sweep"):
        sweep.expand(sweep.load_spec(f, ["out=x"]))
    with pytest.raises(ConfigError, match="needs data"):
        sweep.expand(sweep.load_spec(None, ["lr=1,2"]))
    with pytest.raises(ConfigError, match="--set"):
        sweep.load_spec(None, ["lr"])


def test_without_ray_one_line_and_exit_2(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from bt_core.cli import main; "
            f"sys.exit(main(['sweep', '--set', 'data=x', '--set', 'lr=1,2', '--out', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"error: {sweep.INSTALL_HINT}"]


@pytest.fixture
def local_ray(monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_point_sweep_with_a_failure_and_a_resume(local_ray, tmp_path, capsys):
    from conftest import make_folder
    from bt_core.cli import main

    folder = make_folder(tmp_path / "data", n_per_class=8, size=64)
    reg = tmp_path / "runs"
    argv = ["sweep", "--out", str(reg), "--set", f"data={folder}", "--set", "model=compact_cnn,nonsense",
            "--set", "epochs=1", "--set", "image-size=64", "--set", "folds=2", "--set", "batch-size=8",
            "--set", "split=random"]
    assert main(argv) == 1  # one configuration failed
    out, err = capsys.readouterr()
    ok = [r for r in runs.list_runs(reg) if (r.get("sweep") or {}).get("options", {}).get("model") == "compact_cnn"]
    assert len(ok) == 1 and ok[0]["status"] == "finished" and ok[0]["has_model"]
    rec = runs.load_run(ok[0]["dir"])
    sweep_id = rec["sweep"]["id"]
    assert rec["mode"] == "cv" and len(rec["folds"]) == 2 and rec["label"].startswith(sweep_id)
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "invalid choice: 'nonsense'" in failed[0]
    log = Path(failed[0].rsplit("log: ", 1)[1])
    assert log.is_file() and "nonsense" in log.read_text()
    assert f"| 1 | {rec['sweep']['config_id']} | model=compact_cnn |" in out and ok[0]["id"] in out
    assert not (reg / sweep.SWEEPS_DIR / sweep_id / "tmp").exists()  # scratch folders are gone

    assert main(argv) == 1  # again: the finished one is skipped, the failing one is tried again
    out, err = capsys.readouterr()
    assert "2 configurations, 1 already finished, 1 to run" in out and "[1/1]" in out
    assert len([r for r in runs.list_runs(reg) if r.get("sweep")]) == 1
    summary = json.loads((reg / sweep.SWEEPS_DIR / sweep_id / "summary.json").read_text())
    assert summary["skipped"] == [rec["sweep"]["config_id"]] and len(summary["failed"]) == 1
    assert summary["table"][0]["run"] == ok[0]["id"] and summary["table"][0]["cv_accuracy"] is not None
