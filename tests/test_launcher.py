"""The training launcher: validation, the data-folder fence, one job at a time, faults, restarts, cancel.

One real (tiny) training job runs end to end; the fault tests use ``tests/fake_trainer.py`` through the
documented hook ``launcher.CHILD_PROGRAM``, which starts in a blink and parses the same argv.
"""
import ast
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest
from conftest import make_folder

from bt_core.serving import jobspec, launcher
from bt_core import runs
from bt_core.errors import BTError, ConfigError

REPO = Path(__file__).resolve().parent.parent
FAKE = str(Path(__file__).with_name("fake_trainer.py"))
SPLIT_MODULES = ("launcher", "jobspec", "data_roots", "switch")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Runs registry, data root (with a tiny two-class folder) and an outside folder, all under tmp."""
    root, outside = tmp_path / "dataroot", tmp_path / "outside"
    make_folder(root / "tiny", n_per_class=10)
    make_folder(outside / "evil", n_per_class=2)
    monkeypatch.setenv("BT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("BT_DATA_ROOTS", str(root))
    monkeypatch.delenv("BT_ENABLE_TRAINING", raising=False)
    yield tmp_path
    for job in launcher.list_jobs():  # never leave a child behind
        if job["status"] == "running":
            launcher.cancel(job["id"], grace=0.5)


def fake(monkeypatch, behave):
    monkeypatch.setattr(launcher, "CHILD_PROGRAM", [sys.executable, FAKE, "--behave", behave])


def spec(tmp, **kw):
    return launcher.JobSpec(data_dir=str(tmp / "dataroot" / "tiny"), **{"epochs": 1, "folds": 2, **kw})


def wait_for(cond, timeout=30.0, what="condition"):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def fresh_list(tmp) -> list[dict]:
    """list_jobs() from a new Python process, as after an app restart."""
    code = "import json; from bt_core.serving import launcher; print(json.dumps(launcher.list_jobs()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60,
                         env={**os.environ, "BT_RUNS_DIR": str(tmp / "runs")})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --- switched off by default ------------------------------------------------------------------------

def test_on_locally_off_on_community_cloud_and_an_explicit_switch_wins(monkeypatch, tmp_path):
    monkeypatch.delenv("BT_ENABLE_TRAINING", raising=False)
    local = {"HOME": str(tmp_path), "HOSTNAME": "laptop"}
    assert launcher.enabled(local) and launcher.enabled(local, {}, "localhost") and launcher.enabled(local, {}, "::1")
    assert not launcher.enabled(local, {}, "0.0.0.0") and not launcher.enabled(local, {}, "bt.example.org")
    for cloud in ({"HOSTNAME": "streamlit"}, {"SF_PARTNER": "streamlit"}, {"HOME": "/home/appuser"}):
        on, why = launcher.training_switch(cloud)
        assert not on and "Community Cloud" in why
        assert launcher.enabled({**cloud, "BT_ENABLE_TRAINING": "1"}) and launcher.enabled(cloud, {"enable_training": True})
    assert launcher.on_community_cloud({}, repo=Path("/mount/src/brain-tumour"))
    assert not launcher.on_community_cloud(local, repo=tmp_path)
    assert not launcher.enabled({**local, "BT_ENABLE_TRAINING": "0"}) and not launcher.enabled(local, {"enable_training": False})
    assert not launcher.enabled({**local, "BT_ENABLE_TRAINING": "off"}, {"enable_training": True})  # env first
    assert launcher.enabled({**local, "BT_ENABLE_TRAINING": "maybe"})  # not a switch: the default decides
    assert launcher.training_switch({"BT_ENABLE_TRAINING": "1"}, None, "0.0.0.0") == (True, "set by BT_ENABLE_TRAINING")


def test_allowed_roots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    env = {"BT_DATA_ROOTS": os.pathsep.join([str(a), str(tmp_path / "missing"), "", str(b)])}
    assert launcher.allowed_roots(env) == [a.resolve(), b.resolve()]
    default = (REPO.parent / "shared" / "data")
    assert launcher.allowed_roots({}) == ([default.resolve()] if default.is_dir() else [])
    assert launcher.allowed_roots({"BT_DATA_ROOTS": ""}) == []


# --- validation ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    ({"epochs": 0}, "epochs"), ({"epochs": 1001}, "epochs"), ({"epochs": "5"}, "epochs"), ({"epochs": 2.5}, "epochs"),
    ({"epochs": True}, "epochs"), ({"folds": 1}, "folds"), ({"batch_size": 0}, "batch size"),
    ({"image_size": 8}, "image size"), ({"model": "resnet"}, "model"), ({"model": "paper_cnn; rm -rf /"}, "model"),
    ({"backbone": "vgg"}, "backbone"), ({"split": "leaky"}, "split"), ({"mode": "evaluate"}, "mode"),
    ({"augment": "yes"}, "augment"), ({"lr": 0}, "learning rate"), ({"lr": "1e-3"}, "learning rate"),
    ({"lr": 0.5}, "learning rate"), ({"head_pool": 17}, "head pool"), ({"degrade_copies": 9}, "degrade copies"), ({"preprocess": "zscore"}, "preprocess"),
    ({"pooling": "max", "model": "transfer"}, "pooling"), ({"mirror": "yes", "model": "transfer"}, "mirror"),
    ({"pooling": "multiscale"}, "transfer model only"), ({"mirror": True, "model": "paper_cnn"}, "transfer model only"),
    ({"views": 9}, "views"), ({"views": -1}, "views"), ({"balance": "family"}, "balance"), ({"dense_units": 0}, "dense units"),
    ({"dropout": 1.0}, "dropout"), ({"dropout": "0.3"}, "dropout"), ({"dropout": float("nan")}, "dropout"),
    ({"mask_weight": -1.0, "model": "patch", "image_size": 128}, "mask weight"),
    ({"samples_per_epoch": -1, "model": "patch", "image_size": 128}, "samples per epoch"),
    ({"head_depth": 5, "model": "patch", "image_size": 128}, "head depth"), ({"freeze_backbone": "yes"}, "freeze_backbone"),
    ({"head_depth": 2}, "head depth apply to the patch model only"),
    ({"freeze_backbone": True, "samples_per_epoch": 100, "model": "transfer"}, "samples per epoch and freeze backbone apply"),
    ({"model": "patch", "image_size": 120}, "multiple of 16"),
    ({"symmetry": True}, "symmetry apply to the patch model only"),
    ({"synth_lesions": 0.5}, "synth lesions apply to the patch model only"),
    ({"synth_lesions": 0.5, "model": "patch", "image_size": 128}, "synth_lesions needs"),
    ({"strip_skull": 1.5, "views": 1}, "strip skull"), ({"strip_skull": 0.5}, "strip_skull needs views"),
    ({"position_strength": 0.5}, "position strength needs --balance position"),
    ({"position_strength": 0.0, "balance": "position"}, "position strength must be a number"),
    ({"position_reference": "tumour"}, "position reference needs --balance position"),
    ({"position_reference": "edge", "balance": "position"}, "position_reference must be one of"),
    ({"model": "patch", "image_size": 128, "backbone": "resnet50v2"}, "EfficientNet-Lite backbone"),
])
def test_bad_spec_is_a_one_line_config_error(env, change, words):
    with pytest.raises(ConfigError, match=words) as err:
        spec(env, **change).validate()
    assert "\n" not in str(err.value)


def test_lite1_without_its_converted_weights_is_refused_before_the_job_starts(env, monkeypatch, tmp_path):
    from bt_core import config

    monkeypatch.setattr(config, "lite_weights_path", lambda variant="lite0": tmp_path / f"{variant}.h5")
    with pytest.raises(ConfigError, match="convert_lite.py --variant lite1") as err:
        spec(env, model="patch", image_size=128, backbone="efficientnet_lite1").validate()
    assert "\n" not in str(err.value)
    spec(env, model="paper_cnn", backbone="efficientnet_lite1").validate()  # the CNN uses no backbone
    (tmp_path / "lite1.h5").write_bytes(b"")
    spec(env, model="patch", image_size=128, backbone="efficientnet_lite1").validate()


def test_launcher_imports_no_backend():
    """The app process reads choices from bt_core.config, which loads no deep-learning backend."""
    code = "import sys, bt_core.serving.launcher; print([m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


def test_data_folder_fence(env):
    root, outside = env / "dataroot", env / "outside" / "evil"
    assert launcher.check_data_dir(root / "tiny") == (root / "tiny").resolve()
    cases = {
        "dotdot": root / "tiny" / ".." / ".." / "outside" / "evil",      # `..` escape
        "missing": root / "nope",
        "empty": "",
    }
    (root / "link_out").symlink_to(outside, target_is_directory=True)   # a symlink pointing outside
    cases["symlink"] = root / "link_out"
    (root / "noclass").mkdir()                                            # no class folders
    (root / "noclass" / "yes").mkdir()
    cases["noclass"] = root / "noclass"
    make_folder(root / "classlink", n_per_class=1)                         # a class folder linked outside
    (root / "classlink" / "yes").rename(root / "classlink" / "yes_old")
    (root / "classlink" / "yes").symlink_to(outside / "yes", target_is_directory=True)
    cases["classlink"] = root / "classlink"
    make_folder(root / "filelink", n_per_class=1)                          # an image linked outside
    (root / "filelink" / "yes" / "x.png").symlink_to(outside / "yes" / "yes0.png")
    cases["filelink"] = root / "filelink"
    for name, path in cases.items():
        with pytest.raises(ConfigError) as err:
            launcher.check_data_dir(path)
        assert "\n" not in str(err.value), name
        with pytest.raises(ConfigError):
            launcher.JobSpec(data_dir=str(path)).validate()
    (root / "link_in").symlink_to(root / "tiny", target_is_directory=True)  # a symlink inside the root is fine
    assert launcher.check_data_dir(root / "link_in") == (root / "tiny").resolve()
    with pytest.raises(ConfigError, match="no data folder is allowed"):
        launcher.check_data_dir(root / "tiny", roots=[])


def test_find_data_folders_two_levels_down(env):
    from bt_core.serving.data_roots import find_data_folders

    root = env / "dataroot"
    make_folder(root / "group" / "nested", n_per_class=1)
    make_folder(root / "healthy", n_per_class=1, classes=("no",))
    make_folder(root / ".hidden", n_per_class=1)
    make_folder(root / "a" / "b" / "too_deep", n_per_class=1)
    (root / "empty").mkdir()
    both = [str((root / d).resolve()) for d in ("tiny", "group/nested")]
    assert find_data_folders([str(root)]) == both
    assert find_data_folders([str(root)], both=False) == [str((root / "healthy").resolve()), both[0], both[1]]
    assert find_data_folders([str(env / "missing")]) == []


def test_argv_is_a_list_never_a_shell_string(env):
    odd = env / "dataroot" / "my data; rm -rf ~ $(reboot)"
    make_folder(odd, n_per_class=1)
    argv = launcher.JobSpec(data_dir=str(odd), augment=True).argv("/p/progress.jsonl", "/p/out")
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert argv[:4] == [sys.executable, "-m", "bt_core", "cv"]
    assert argv[argv.index("--data") + 1] == str(odd.resolve())
    assert argv[argv.index("--progress-file") + 1] == "/p/progress.jsonl" and argv[argv.index("--out") + 1] == "/p/out"
    assert "--augment" in argv and argv[argv.index("--epochs") + 1] == "30"
    assert "--pooling" not in argv and "--mirror" not in argv  # transfer-only options, for a CNN
    assert not {"--views", "--balance", "--dropout", "--dense-units", "--head-depth", "--freeze-backbone"} & set(argv)
    argv = launcher.JobSpec(data_dir=str(odd), model="transfer", pooling="multiscale", mirror=True, lr=3e-4,
                            preprocess="percentile", degrade_copies=2).argv("/p/progress.jsonl", "/p/out")
    assert argv[argv.index("--degrade-copies") + 1] == "2"
    assert argv[argv.index("--pooling") + 1] == "multiscale" and "--mirror" in argv and "--augment" not in argv
    assert float(argv[argv.index("--lr") + 1]) == 3e-4 and argv[argv.index("--preprocess") + 1] == "percentile"
    for module in SPLIT_MODULES:  # the launcher and the modules split out of it
        text = (Path(launcher.__file__).parent / f"{module}.py").read_text()
        calls = [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)]
        assert not any(k.arg == "shell" for c in calls for k in c.keywords), module
        assert "os.system" not in text, module


def test_the_split_modules_names_are_importable_from_the_launcher():
    """Every public name of the launcher before it was split (pages and tests import them from it)."""
    from bt_core.serving import data_roots, jobspec, switch

    before = {"BusyError", "CHILD_PROGRAM", "CHOICES", "CLASSES", "FINAL", "Job", "JobSpec", "LOCAL_ADDRESSES",
              "LR_RANGE", "PAPER_RECIPE", "RANGES", "REPO", "TRANSFER_ONLY", "allowed_roots", "cancel",
              "check_data_dir", "device_info", "enabled", "list_jobs", "log_tail", "on_community_cloud", "progress",
              "recipes", "running_job", "start", "status", "training_switch"}
    assert before <= set(launcher.__all__) and set(launcher.__all__) <= set(dir(launcher))
    assert launcher.JobSpec is jobspec.JobSpec and launcher.check_data_dir is data_roots.check_data_dir
    assert launcher.training_switch is switch.training_switch and launcher.recipes is jobspec.recipes
    for module in SPLIT_MODULES:
        assert len((Path(launcher.__file__).parent / f"{module}.py").read_text().splitlines()) < 300, module


def test_several_sources_are_a_data_option_each_and_a_sources_file_passes_through(env):
    root = env / "dataroot"
    make_folder(root / "healthy", n_per_class=1, classes=("no",))
    make_folder(root / "tumours", n_per_class=1, classes=("yes",))
    (root / "two.toml").write_text('[[source]]\npath = "healthy"\n[[source]]\npath = "tumours"\n')
    real = {n: str((root / n).resolve()) for n in ("tiny", "healthy", "tumours")}
    job = launcher.JobSpec(data_dir=str(root / "tiny"), data_dirs=(str(root / "healthy"), str(root / "tiny"),
                                                                   str(root / "tumours")))
    argv = job.argv("/p/progress.jsonl", "/p/out")
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--data"] == [real["tiny"], real["healthy"], real["tumours"]]
    assert (job.data_dir, job.data_dirs) == (real["tiny"], (real["healthy"], real["tumours"]))  # no repeat
    assert job.argv("/p/progress.jsonl", "/p/out") == argv  # validating again changes nothing
    assert shlex.split(job.command())[4:] == argv[4:argv.index("--progress-file")]
    assert launcher.data_label(asdict(job)) == "tiny, healthy, tumours"
    only_file = launcher.JobSpec(sources_file=str(root / "two.toml"))
    argv = only_file.argv("/p/progress.jsonl", "/p/out")
    assert "--data" not in argv and argv[argv.index("--sources") + 1] == str((root / "two.toml").resolve())
    assert launcher.data_label(asdict(only_file)) == "two.toml"


def test_several_sources_are_checked_one_line_each(env):
    root, outside = env / "dataroot", env / "outside"
    make_folder(root / "healthy", n_per_class=1, classes=("no",))
    make_folder(root / "group" / "tiny", n_per_class=1)  # the same name as dataroot/tiny
    (root / "out.toml").write_text(f'[[source]]\npath = "{outside / "evil"}"\n')
    (root / "nopath.toml").write_text('[[source]]\nname = "x"\n')
    (outside / "s.toml").write_text('[[source]]\npath = "evil"\n')
    cases = [
        (dict(data_dirs=(str(root / "healthy"),)), "no source has a yes/ folder"),
        (dict(data_dirs=(str(root / "tiny"), str(root / "group" / "tiny"))), "two sources share a name: tiny"),
        (dict(data_dirs=(str(root / "tiny"), str(outside / "evil"))), "not inside an allowed data root"),
        (dict(sources_file=str(root / "out.toml")), "not inside an allowed data root"),
        (dict(sources_file=str(root / "nopath.toml")), "each with a path"),
        (dict(sources_file=str(outside / "s.toml")), "not a file inside an allowed data root"),
        (dict(sources_file=str(root)), "not a file inside"),
        (dict(data_dir=str(root / "tiny"), sources_file=str(root / "missing.toml")), "sources file not found"),
        (dict(), "no data chosen"),
    ]
    for fields, words in cases:
        with pytest.raises(ConfigError, match=words) as err:
            launcher.JobSpec(**fields).validate()
        assert "\n" not in str(err.value), fields


@pytest.mark.timeout(300)
def test_real_tiny_job_on_a_folder_and_a_sources_file(env):
    """The real command line takes what the launcher builds for several sources."""
    root = env / "dataroot"
    make_folder(root / "ixi_like", n_per_class=6, classes=("no",))
    (root / "more.toml").write_text('[[source]]\npath = "ixi_like"\nname = "ixi_like"\nfamily = "ixi"\n')
    job = launcher.start(launcher.JobSpec(data_dir=str(root / "tiny"), sources_file=str(root / "more.toml"),
                                          mode="train", epochs=1, image_size=48, batch_size=8))
    rec = wait_for(lambda: (s := launcher.status(job.id))["status"] != "running" and s, 240, "the job to end")
    assert rec["status"] == "finished", launcher.log_tail(job.id)
    data = runs.load_run(env / "runs" / rec["run_id"])["data"]
    assert [s["name"] for s in data["sources"]] == ["tiny", "ixi_like"]


def test_device_info_without_importing_a_backend(tmp_path, monkeypatch):
    code = ("import sys; from bt_core.serving import launcher; d = launcher.device_info(); "
            "assert not {'tensorflow', 'jax', 'torch', 'keras'} & set(sys.modules), sorted(sys.modules); print(d)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    smi = bin_ / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}{os.pathsep}{os.environ['PATH']}")
    info = launcher.device_info({"KERAS_BACKEND": "jax"})
    assert info["backend"] == "jax" and info["gpus"] == ["NVIDIA H100 80GB HBM3"]
    assert info["device"].startswith("CPU") and "GPU is present" in info["note"]  # no jax-cuda installed here
    assert launcher.device_info({"KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""})["gpus"] == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    info = launcher.device_info({"KERAS_HOME": str(tmp_path)})
    assert info["backend"] == "tensorflow" and info["device"].startswith("CPU") and info["note"] == ""


# --- a real job ---------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_real_tiny_job_end_to_end(env):
    job = launcher.start(spec(env, image_size=64, batch_size=8))
    assert job.argv[:4] == [sys.executable, "-m", "bt_core", "cv"] and "--image-size" in job.argv
    with pytest.raises(launcher.BusyError, match=r"already running \(started \d\d:\d\d\); wait for it to finish"):
        launcher.start(spec(env))
    assert launcher.status(job.id)["status"] == "running"
    rec = wait_for(lambda: (s := launcher.status(job.id))["status"] != "running" and s, 240, "the job to end")
    assert rec["status"] == "finished", launcher.log_tail(job.id)
    assert rec["returncode"] == 0 and rec["run_id"]
    p = launcher.progress(job.id)
    assert p["epoch"] == p["epochs"] == 1 and p["folds"] == 2 and p["fold"] == 0 and p["stage"] == "saved"
    assert p["images_per_s"] > 0 and "loss" in p["metrics"] and p["run_id"] == rec["run_id"]
    assert [r["id"] for r in runs.list_runs()] == [rec["run_id"]]
    assert "saved" in launcher.log_tail(job.id)
    assert [(j["id"], j["status"], j["run_id"]) for j in fresh_list(env)] == [(job.id, "finished", rec["run_id"])]
    again = launcher.start(spec(env, epochs=1, mode="train", image_size=64))  # not busy any more
    launcher.cancel(again.id, grace=1)


# --- faults, restarts, cancel (fake trainer) ----------------------------------------------------------

def test_sigkill_mid_save_fails_with_its_log_and_leaves_no_run(env, monkeypatch):
    fake(monkeypatch, "ok")
    ok = launcher.start(spec(env))
    done = wait_for(lambda: (s := launcher.status(ok.id))["status"] != "running" and s, 30, "the fake job")
    assert done["status"] == "finished" and done["run_id"]
    fake(monkeypatch, "hang_in_save")
    job = launcher.start(spec(env))
    wait_for(lambda: "saving: half-way" in launcher.log_tail(job.id), 30, "the save to begin")
    os.killpg(job.pid, signal.SIGKILL)
    rec = wait_for(lambda: (s := launcher.status(job.id))["status"] != "running" and s, 30, "the kill to show")
    assert rec["status"] == "failed" and rec["error"] and rec["run_id"] is None
    assert "saving: half-way" in rec["log_tail"] and "fake trainer" in rec["log_tail"]
    out = env / "runs"
    assert [r["id"] for r in runs.list_runs(out)] == [done["run_id"]]       # the half-saved run is invisible
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert len(hidden) == 1 and not (out / hidden[0] / runs.RUN_FILE).exists()
    after = fresh_list(env)                                                   # as after an app restart
    assert [(j["id"], j["status"]) for j in after] == [(job.id, "failed"), (ok.id, "finished")]
    assert after[0]["log_tail"] and after[1]["run_id"] == done["run_id"]


def start_elsewhere(tmp, behave="sleep") -> str:
    """Start a fake job from another Python process, which then exits (an app that restarted)."""
    code = ("import sys; from bt_core.serving import launcher; launcher.CHILD_PROGRAM = sys.argv[1:]; "
            f"print(launcher.start(launcher.JobSpec(data_dir={str(tmp / 'dataroot' / 'tiny')!r})).id)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, FAKE, "--behave", behave], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_job_of_a_dead_app_is_tracked_and_a_stale_record_is_cleared(env, monkeypatch):
    """A job started by another process (an app since restarted) is seen as running, blocks a start,
    can be cancelled, and once killed -9 shows as failed; nothing of it blocks the next start."""
    job_id = start_elsewhere(env)
    wait_for(lambda: "sleeping" in launcher.log_tail(job_id), 30, "the orphaned job to sleep")
    assert launcher.cancel(job_id, grace=2)["status"] == "cancelled"
    job_id = start_elsewhere(env)
    rec = launcher.status(job_id)
    assert rec["status"] == "running" and psutil.pid_exists(rec["pid"])
    assert launcher.running_job()["id"] == job_id
    wait_for(lambda: "sleeping" in launcher.log_tail(job_id), 30, "the orphaned job to sleep")
    fake(monkeypatch, "ok")
    with pytest.raises(launcher.BusyError):
        launcher.start(spec(env))
    os.killpg(rec["pid"], signal.SIGKILL)
    failed = wait_for(lambda: (s := launcher.status(job_id))["status"] != "running" and s, 30, "the kill to show")
    assert failed["status"] == "failed" and "sleeping" in failed["log_tail"]
    # a record naming a process that no longer exists (or a reused PID) is stale, never a lock
    stale = env / "runs" / "_jobs" / "20200101-000000-compact_cnn-abcdef"
    stale.mkdir()
    (stale / "job.json").write_text(json.dumps({"id": stale.name, "status": "running", "pid": os.getpid(),
                                                 "ctime": 1.0, "started": 1.0, "spec": {}}))
    assert launcher.status(stale.name)["status"] == "failed"
    nxt = launcher.start(spec(env))
    assert wait_for(lambda: launcher.status(nxt.id)["status"] == "finished", 30, "the next job")


def test_cancel_terminates_then_kills(env, monkeypatch):
    fake(monkeypatch, "sleep")
    job = launcher.start(spec(env))
    wait_for(lambda: "sleeping" in launcher.log_tail(job.id), 30, "the fake job to sleep")
    p = launcher.progress(job.id)  # a half-written last line is ignored
    assert p["epoch"] == 1 and p["metrics"]["loss"] == 0.69 and p["images_per_s"] == 123.0 and p["fold"] == 1
    rec = launcher.cancel(job.id, grace=3)
    assert rec["status"] == "cancelled" and rec["returncode"] in (-signal.SIGTERM, None)
    assert not psutil.pid_exists(job.pid) or psutil.Process(job.pid).status() == psutil.STATUS_ZOMBIE
    assert launcher.cancel(job.id)["status"] == "cancelled"  # idempotent
    fake(monkeypatch, "stubborn")                             # ignores SIGTERM: SIGKILL after the grace
    job = launcher.start(spec(env))
    wait_for(lambda: "sleeping" in launcher.log_tail(job.id), 30, "the stubborn job to sleep")
    t0 = time.monotonic()
    assert launcher.cancel(job.id, grace=0.5)["status"] == "cancelled"
    assert time.monotonic() - t0 < 5
    assert runs.list_runs() == []


def test_crash_shows_the_error_line(env, monkeypatch):
    fake(monkeypatch, "crash")
    job = launcher.start(spec(env))
    rec = wait_for(lambda: (s := launcher.status(job.id))["status"] != "running" and s, 30, "the crash")
    assert rec["status"] == "failed" and rec["error"] == "class folder missing: /nowhere/yes"
    assert rec["returncode"] in (2, None)


def test_the_stand_in_trainer_takes_every_option_the_launcher_passes_and_refuses_as_the_real_command(env):
    """The stand-in parses with the real parser and TrainConfig rules: every option the launcher can pass
    (each WHEN_CHANGED field moved off its default, each bare flag on) is taken without a change to the stand-in,
    and what the real command refuses (an unknown option, an option that needs another) ends in one error line."""
    changed = {"views": 1, "strip_skull": 0.5, "balance": "position", "position_strength": 0.5,
               "position_reference": "tumour", "dense_units": 64, "dropout": 0.3, "samples_per_epoch": 100,
               "mask_weight": 0.5, "freeze_backbone": True, "head_depth": 1, "symmetry": True,
               "synth_lesions": 0.2, "lesion_weight": 0.5}
    assert set(changed) == set(jobspec.WHEN_CHANGED)  # a new launcher option: add it here too
    job = spec(env, model="patch", augment=True, **changed)
    argv = job.argv(str(env / "progress.jsonl"), str(env / "runs"), program=[sys.executable, FAKE, "--behave", "ok"])
    assert all(getattr(job, k) != d for k, d in jobspec.WHEN_CHANGED.items())
    ok = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "saved" in ok.stdout
    for extra, words in ((["--no-such-option", "1"], "unrecognized arguments"),
                         (["--balance", "source"], "needs --balance position")):
        bad = subprocess.run([*argv, *extra], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert bad.returncode == 2 and words in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr


def test_broken_records_never_raise(env):
    jobs = env / "runs" / "_jobs"
    (jobs / "20200101-000000-x-000000").mkdir(parents=True)
    (jobs / "20200101-000000-x-000000" / "job.json").write_text("{half")
    (jobs / "not a job").mkdir()
    listed = launcher.list_jobs()
    assert [(j["id"], j["status"]) for j in listed] == [("20200101-000000-x-000000", "failed")]
    assert launcher.progress("20200101-000000-x-000000")["stage"] == "starting"
    for bad in ("../etc", "a/b", ""):
        with pytest.raises(ConfigError):
            launcher.status(bad)
    assert issubclass(launcher.BusyError, BTError)


def test_recipes_are_the_paper_and_the_shipped_runs_settings(env):
    root = env / "runs"
    cfg = {"model": "transfer", "backbone": "efficientnet_lite0", "epochs": 30, "preprocess": "percentile",
           "pooling": "multiscale", "mirror": True, "lr": 1e-4, "image_size": 240, "fine_tune_from": ""}
    good = runs.save_run({"mode": "cv", "config": cfg}, None, root, run_id="good-transfer")
    (root / "shipped.json").write_text(json.dumps({"transfer": good.name, "cnn": "missing-run"}))
    got = launcher.recipes(root)
    paper = got[launcher.PAPER_RECIPE]
    assert paper["model"] == "paper_cnn" and paper["image_size"] == 240 and paper["lr"] == 1e-4 and paper["epochs"] == 30
    (name,) = [n for n in got if "shipped" in n]  # the missing CNN run gives no recipe, and no error
    assert "good-transfer" in name and "transfer" in name
    assert {k: got[name][k] for k in ("model", "preprocess", "pooling", "mirror")} == {
        "model": "transfer", "preprocess": "percentile", "pooling": "multiscale", "mirror": True}
    launcher.JobSpec(data_dir=str(env / "dataroot" / "tiny"), **got[name]).validate()  # a recipe is a valid spec


def test_a_shipped_runs_recipe_trains_with_its_trainconfig(env, monkeypatch):
    """Each shipped run's recipe -> command -> the real parser (build_parser) and the CLI's TrainConfig
    (commands_train._config): equal to the run's recorded config in every field. None is left out: a
    TrainConfig holds no data paths (only --data/--sources differ), and a recipe keeps the recorded epochs."""
    from bt_core.cli.commands_train import _config
    from bt_core.cli.parser import build_parser
    from bt_core.config import TrainConfig

    shipped_root = REPO / "trained_models"
    root = env / "dataroot"
    make_folder(root / "healthy", n_per_class=2, classes=("no",))
    make_folder(root / "tumours", n_per_class=2, classes=("yes",))
    (root / "one.toml").write_text('[[source]]\npath = "tumours"\nfamily = "t"\n')
    got = launcher.recipes(shipped_root)
    fake(monkeypatch, "ok")
    for kind, folder in runs.shipped(shipped_root).items():
        (name,) = [n for n in got if folder.name in n]
        want = TrainConfig.from_dict(runs.load_run(folder)["config"])
        job = launcher.JobSpec(data_dir=str(root / "tiny"), data_dirs=(str(root / "healthy"),),
                               sources_file=str(root / "one.toml"), **got[name])
        argv = shlex.split(job.command())
        assert argv[:3] == ["python", "-m", "bt_core"]
        cfg = _config(build_parser().parse_args(argv[3:]))
        assert asdict(cfg) == asdict(want), kind
        assert ("--freeze-backbone" in argv) is want.freeze_backbone  # a bare flag, never "--freeze-backbone True"
        assert "True" not in argv and "False" not in argv
        run = launcher.start(job)  # the fake trainer takes the same argv: repeated --data, --sources, every option
        rec = wait_for(lambda: (s := launcher.status(run.id))["status"] != "running" and s, 30, "the fake job")
        assert rec["status"] == "finished", rec.get("log_tail")
    patch = [TrainConfig.from_dict(runs.load_run(f)["config"]) for f in runs.shipped(shipped_root).values()]
    assert any(c.model == "patch" and c.views and c.balance == "position" and c.position_strength < 1 for c in patch)  # the options at stake
