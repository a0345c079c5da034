"""Several devices on a CPU machine: fake TF devices (in a fresh process), fold jobs and parallel folds."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from bt_core import cli, data
from bt_core.models import distribute, training
from bt_core.errors import BTError, ConfigError

from conftest import make_folder

ROOT = Path(__file__).resolve().parent.parent

TWO_DEVICES = textwrap.dedent("""
    import dataclasses, json, sys
    from bt_core.models import distribute
    names = distribute.fake_cpu_devices(2)  # before TensorFlow initialises its devices
    import numpy as np
    from conftest import blob_image
    from bt_core.models import networks, training

    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 16)
    x = np.stack([blob_image(rng, 64, bool(t)) for t in y])[..., None].astype(np.float32)
    cfg = training.TrainConfig(model="compact_cnn", image_size=64, epochs=2, batch_size=8, lr=1e-3, dropout=0.0,
                               data_parallel=True)
    model, hist = training.fit(cfg, x[:24], y[:24], x[24:], y[24:])
    single, hist1 = training.fit(dataclasses.replace(cfg, data_parallel=False), x[:24], y[:24], x[24:], y[24:])
    heads, split_at = [], networks.split_at
    networks.split_at = lambda *a, **k: heads.append(split_at(*a, **k)) or heads[-1]
    tcfg = training.TrainConfig(model="transfer", backbone_weights=None, image_size=32, epochs=1, batch_size=8,
                                data_parallel=True)
    tmodel, thist = training.fit(tcfg, x[:16, :32, :32], y[:16])
    print(json.dumps({"names": names, "replicas": model.distribute_strategy.num_replicas_in_sync,
                      "devices": list(model.distribute_strategy.extended.worker_devices),
                      "single_replicas": single.distribute_strategy.num_replicas_in_sync,
                      "head_replicas": heads[0][1].distribute_strategy.num_replicas_in_sync,
                      "loss": hist["loss"], "loss_single": hist1["loss"], "head_loss": thist["loss"],
                      "prob": training.predict_proba(model, x).tolist(),
                      "prob_single": training.predict_proba(single, x).tolist()}))
""")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="fake TF devices")
def test_data_parallel_fit_on_two_fake_cpu_devices_matches_one_device():
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["names"] == ["/device:CPU:0", "/device:CPU:1"]
    assert r["replicas"] == 2 and len(r["devices"]) == 2 and r["single_replicas"] == 1
    assert r["head_replicas"] == 2  # the transfer head trained on cached features is mirrored too
    assert len(r["loss"]) == 2 and np.isfinite(r["loss"] + r["head_loss"]).all()
    assert len(r["prob"]) == len(r["prob_single"]) == 32
    # the global batch is split across the replicas and gradients summed: same training as one device
    np.testing.assert_allclose(r["loss"], r["loss_single"], rtol=1e-4)
    np.testing.assert_allclose(r["prob"], r["prob_single"], atol=1e-4)


def test_data_parallel_is_a_no_op_on_one_device_and_fake_devices_need_a_fresh_process():
    import tensorflow as tf

    tf.config.list_logical_devices()  # TensorFlow is initialised in this process
    with distribute.data_parallel() as strategy:
        assert strategy is None
    with pytest.raises(ConfigError, match="fresh process"):
        distribute.fake_cpu_devices(2)
    with pytest.raises(ConfigError):
        with distribute.data_parallel(0):
            pass
    d = distribute.describe()
    assert d["backend"] == keras.backend.backend() and d["n_gpus"] == len(d["devices"])


def test_jax_branch_sets_keras_data_parallel_and_restores_the_previous_distribution(monkeypatch):
    calls = []
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    monkeypatch.setattr(keras.distribution, "list_devices", lambda *a: ["gpu:0", "gpu:1", "gpu:2"])
    monkeypatch.setattr(keras.distribution, "DataParallel", lambda devices: ("dp", tuple(devices)))
    monkeypatch.setattr(keras.distribution, "distribution", lambda: "previous")
    monkeypatch.setattr(keras.distribution, "set_distribution", calls.append)
    with distribute.data_parallel(2) as dist:
        assert dist == ("dp", ("gpu:0", "gpu:1")) and calls == [dist]
    assert calls[-1] == "previous"
    with pytest.raises(RuntimeError):
        with distribute.data_parallel():
            raise RuntimeError("training failed")
    assert calls[-1] == "previous"  # restored on error too
    with pytest.raises(ConfigError, match="xla_force_host_platform_device_count"):
        distribute.fake_cpu_devices(2)


def test_fold_jobs_one_process_per_gpu_without_a_shell(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    base = ["cv", "--data=/d; rm -rf /", "--folds=3"]
    jobs = distribute.fold_jobs(base, 3, ["3", "5"], tmp_path)
    assert [env["CUDA_VISIBLE_DEVICES"] for env, _ in jobs] == ["3", "5", "3"]
    for k, (env, argv) in enumerate(jobs, start=1):
        assert argv[:3] == [sys.executable, "-m", "bt_core"] and argv[3:6] == base
        assert argv[argv.index("--only-fold") + 1] == str(k)
        assert argv[argv.index("--out") + 1] == str(tmp_path / f"fold-{k}")
        assert all(isinstance(a, str) for a in argv)  # an argv list: no shell ever parses it
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"  # the parent's environment is untouched
    for bad in [("train", 3, ["0"]), ("cv", 3, []), ("cv", 0, ["0"])]:
        with pytest.raises(ConfigError):
            distribute.fold_jobs([bad[0]], bad[1], bad[2])
    with pytest.raises(ConfigError, match="--parallel-folds applies to cv"):
        distribute.folds_from_cli(cli.build_parser().parse_args(["train", "--data", "x"]), None, "train", 3)


def test_child_argv_parses_back_to_the_same_options():
    parser = cli.build_parser()
    args = parser.parse_args(["cv", "--data", "my data", "--classes", "neg", "pos", "--epochs", "2", "--lr", "0.003",
                              "--fine-tune-from", "", "--augment", "--data-parallel", "--parallel-folds", "--out", "o",
                              "--label", "x", "--progress-file", "p.jsonl", "--backbone-weights", "none"])
    child = parser.parse_args([*distribute.child_argv(parser, args), "--only-fold", "2", "--out", "tmp"])
    for key, value in vars(args).items():
        if key not in distribute.CHILD_DROPS:
            assert getattr(child, key) == value, key
    assert not child.parallel_folds and child.only_fold == 2 and child.out == "tmp" and child.label is None


FAKE_CHILD = textwrap.dedent("""
    import json, os, pathlib, sys, time
    k, out = int(sys.argv[sys.argv.index("--only-fold") + 1]), pathlib.Path(sys.argv[sys.argv.index("--out") + 1])
    gpu = os.environ["CUDA_VISIBLE_DEVICES"]
    t0 = time.time()
    time.sleep(0.3)
    if os.environ.get("FAIL_FOLD") == str(k):
        print("error: fold exploded", file=sys.stderr)
        sys.exit(2)
    (out / "run-x").mkdir(parents=True)
    (out / "run-x" / "run.json").write_text(json.dumps({"data": {"fingerprint": "f"}, "gpu": gpu,
        "span": [t0, time.time()], "folds": [{"fold": k, "metrics": {}}],
        "oof": {"idx": [10 * k, 10 * k + 1], "prob": [0.1 * k, 0.2], "fold": [k, k]}}))
""")


def test_run_folds_parallel_at_most_one_process_a_gpu_and_failures_name_the_fold(tmp_path, monkeypatch):
    script = tmp_path / "child.py"
    script.write_text(FAKE_CHILD)
    events = []
    records = distribute.run_folds_parallel(["cv"], 5, ["0", "1"], tmp_path / "w", events.append,
                                            command=[sys.executable, str(script)], poll_s=0.05)
    assert [r["folds"][0]["fold"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["gpu"] for r in records] == ["0", "1", "0", "1", "0"]
    for gpu in "01":
        spans = sorted(r["span"] for r in records if r["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never two folds on one GPU
    assert sorted(e["fold"] for e in events if e["event"] == "fold_done") == [1, 2, 3, 4, 5]
    folds, oof = distribute.merge_fold_records(records, 5)
    assert oof["idx"][:4] == [10, 11, 20, 21] and oof["fold"][:4] == [1, 1, 2, 2]

    monkeypatch.setenv("FAIL_FOLD", "2")
    with pytest.raises(BTError, match=r"fold 2 failed \(exit status 2\): error: fold exploded; full log: .*fold-2\.log"):
        distribute.run_folds_parallel(["cv"], 3, ["0", "1"], tmp_path / "w2", command=[sys.executable, str(script)],
                                      poll_s=0.05)
    with pytest.raises(BTError, match="fold 1 could not start"):
        distribute.run_folds_parallel(["cv"], 1, ["0"], tmp_path / "w3", command=[str(tmp_path / "missing")])


def test_merge_fold_records_checks_the_folds():
    rec = lambda k, fp="f": {"data": {"fingerprint": fp}, "folds": [{"fold": k}],
                             "oof": {"idx": [k], "prob": [0.5], "fold": [k]}}
    folds, oof = distribute.merge_fold_records([rec(3), rec(1), rec(2)], 3, train_idx=[3, 2, 1], fingerprint="f")
    assert [f["fold"] for f in folds] == [1, 2, 3] and oof == {"idx": [1, 2, 3], "prob": [0.5] * 3, "fold": [1, 2, 3]}
    for records, match in [([rec(1), rec(1)], "twice"), ([rec(1)], "expected 1..2"), ([rec(1), rec(2, "g")], "different data")]:
        with pytest.raises(BTError, match=match):
            distribute.merge_fold_records(records, 2)
    with pytest.raises(BTError, match="do not cover"):
        distribute.merge_fold_records([rec(1), rec(2)], 2, train_idx=[1, 2, 7])


def test_only_fold_children_and_their_merge_reproduce_the_sequential_cv(tmp_path, capsys):
    folder = make_folder(tmp_path / "data", n_per_class=10, size=48)
    base = ["cv", "--data", str(folder), "--model", "compact_cnn", "--epochs", "1", "--batch-size", "8",
            "--folds", "2", "--split", "random", "--image-size", "48", "--lr", "0.001"]
    assert cli.main([*base, "--only-fold", "2"]) == 2  # a partial run needs a scratch --out
    assert "--out" in capsys.readouterr().err
    for k in (1, 2):
        assert cli.main([*base, "--only-fold", str(k), "--out", str(tmp_path / f"fold-{k}")]) == 0
    children = [distribute.read_fold_record(tmp_path / f"fold-{k}", k) for k in (1, 2)]
    assert children[1]["only_fold"] == 2 and "test" not in children[1] and len(children[1]["folds"]) == 1
    # without GPUs, --parallel-folds says so and runs the folds itself
    assert cli.main([*base, "--parallel-folds", "--out", str(tmp_path / "runs")]) == 0
    assert "0 GPU visible" in capsys.readouterr().err
    (seq_dir,) = (tmp_path / "runs").iterdir()
    seq = json.loads((seq_dir / "run.json").read_text())
    cfg = training.TrainConfig(model="compact_cnn", epochs=1, batch_size=8, folds=2, split="random", image_size=48,
                               lr=1e-3)
    model, merged = training.run_protocol(cfg, data.load_folder(folder), "cv", fold_records=children)
    assert merged["oof"]["idx"] == seq["oof"]["idx"] and merged["oof"]["fold"] == seq["oof"]["fold"]
    np.testing.assert_allclose(merged["oof"]["prob"], seq["oof"]["prob"], atol=1e-5)
    assert merged["test"]["idx"] == seq["test"]["idx"] and model is not None
    np.testing.assert_allclose(merged["test"]["prob"], seq["test"]["prob"], atol=1e-5)
    with pytest.raises(ConfigError):
        training.run_protocol(cfg, data.load_folder(folder), "train", only_fold=1)
