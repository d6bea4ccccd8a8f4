"""Training on shards, on one device, two devices and two worker processes: real tf.distribute runs on tiny data.

The two-device and two-worker runs are processes of their own (a CPU is split into logical devices, and a cluster
is formed, only before TensorFlow starts); each must reach the single-device run's held-out RMSE within 10%, and the
two-worker model converts and verifies like any other.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from gru_edge import data

ARGS = ["--column", "y", "--features", "a,b,c", "--transform", "diff", "--window", "8", "--units", "8",
        "--epochs", "5", "--batch-size", "48", "--test-size", "40"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Three shards: one series each, of different lengths."""
    folder = tmp_path_factory.mktemp("fleet")
    for s, rows in enumerate((260, 200, 320)):
        data.write_synthetic_csv(folder / f"device-{s}.csv", rows=rows, seed=s)
    return folder


@pytest.fixture(scope="module")
def single(fleet, tmp_path_factory):
    """The reference: the same shards streamed on the default device, in this process."""
    from gru_edge.model import TrainConfig, train

    run = tmp_path_factory.mktemp("single") / "run"
    return train(TrainConfig(data=str(fleet / "*.csv"), column="y", features=("a", "b", "c"), transform="diff",
                             window=8, units=8, epochs=5, batch_size=48, test_size=40), run)  # as ARGS


def _train(*extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "gru_edge", "train", *ARGS, "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _result(proc, timeout=240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:] + out[-2000:]
    doc = json.loads(out)
    assert doc["ok"], doc
    return doc["result"]


def test_streaming_over_shards_beats_the_naive_forecast_and_writes_a_bounded_run(single, fleet):
    card = single.card
    assert card.data["shards"] == 3 and card.data["rows"] == 780
    assert card.split["heldout_windows"] == 3 * 40  # horizon 1: one window for each of a shard's last 40 values
    assert card.split["kind"] == "chronological per shard"
    m = card.metrics
    assert m["heldout_rmse"] < 0.8 * m["naive_rmse"] and m["beaten_baselines"] == ["naive"], m
    import numpy as np

    with np.load(single.run_dir / "windows.npz") as z:  # raw windows: the lag of 'diff' and 8 steps
        assert set(z["test_shard"]) == {0, 1, 2} and len(z["test_x"]) == 120 and z["test_x"].shape[1:] == (9, 4)
        # fitted on: first targets from lag + window = 9 to n_train - validation - horizon, all kept (< SAMPLE)
        assert len(z["train_x"]) == sum(n - round(0.2 * n) - 9 for n in (220, 160, 280))


def test_two_devices_in_one_process_match_one_device(single, fleet, tmp_path):
    r = _result(_train("--data", str(fleet / "*.csv"), "--distribute", "mirrored", "--devices", "2",
                       "-o", str(tmp_path / "run")))
    assert json.loads((tmp_path / "run" / "training.json").read_text())["model"]["distribute"]["replicas"] == 2
    single_rmse = single.card.metrics["heldout_rmse"]
    assert abs(r["metrics"]["heldout_rmse"] - single_rmse) <= 0.1 * single_rmse, (r["metrics"], single_rmse)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_worker_processes_on_localhost_form_one_job_whose_model_converts_and_verifies(single, fleet, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = tmp_path / "run"
    procs = [_train("--data", str(fleet / "*.csv"), "--distribute", "multi-worker", "-o", str(run),
                    env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
             for i in range(2)]
    try:
        chief, other = (_result(p) for p in procs)
    finally:
        for p in procs:
            p.kill()
    assert chief["written"] and not other["written"]
    card = json.loads((run / "training.json").read_text())
    assert card["model"]["distribute"] == {"strategy": "multi-worker", "replicas": 2, "workers": 2}
    single_rmse = single.card.metrics["heldout_rmse"]
    for r in (chief, other):  # both workers hold the same model
        assert abs(r["metrics"]["heldout_rmse"] - single_rmse) <= 0.1 * single_rmse, (r["metrics"], single_rmse)

    from gru_edge import api

    converted = api.convert(run / "model.keras", ["int8"], tmp_path / "models")
    result = api.verify(run / "model.keras", converted.models[0].path)
    assert result.report.passed, result.report


def test_multi_worker_without_a_cluster_and_unsupported_settings_are_one_line(fleet, tmp_path):
    from click.testing import CliRunner

    from gru_edge.cli import cli

    cases = [(["--distribute", "multi-worker"], "TF_CONFIG", 1),
             (["--transform", "auto"], "--transform auto compares trained candidates", 1),
             (["--devices", "2"], "--devices is for --distribute mirrored", 2),
             (["--task", "classification"], "classification trains from one CSV file", 1)]
    for extra, message, code in cases:
        args = ["train", "--data", str(fleet / "*.csv"), "--column", "y", "-o", str(tmp_path / "x"), *extra]
        res = CliRunner().invoke(cli, args, env={"TF_CONFIG": ""})
        assert res.exit_code == code and message in res.output and "Traceback" not in res.output, res.output
        assert not (tmp_path / "x").exists()


def test_a_worker_whose_peers_never_come_gives_up_in_one_line(fleet, tmp_path):
    """TensorFlow waits for the cluster without end (holding the GIL); gru-edge's watchdog ends the worker after
    GRU_EDGE_CLUSTER_TIMEOUT seconds, saying why."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    proc = _train("--data", str(fleet / "*.csv"), "--distribute", "multi-worker", "-o", str(tmp_path / "run"),
                  env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}),
                       "GRU_EDGE_CLUSTER_TIMEOUT": "3"})
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "did not all join within 3 s" in err and "Traceback" not in err, err[-2000:]
