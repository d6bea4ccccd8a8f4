"""Shared fixtures: the two reference models of the issues, trained for real on tiny data and converted once.

R1 = GRU(32), T=12, F=1 -> 1 (airline data). R2 = GRU(64, return_sequences) -> GRU(64) -> Dense(3), T=24, F=4
(a generated CSV with a target and three feature columns).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    from gru_edge.data import write_synthetic_csv

    return write_synthetic_csv(tmp_path_factory.mktemp("data") / "synthetic.csv")


@pytest.fixture(scope="session")
def r1_run(tmp_path_factory) -> Path:
    from gru_edge.model import TrainConfig, train

    run = tmp_path_factory.mktemp("r1") / "run"
    train(TrainConfig(units=32, window=12, epochs=5), run)
    return run


@pytest.fixture(scope="session")
def r2_run(tmp_path_factory, synthetic_csv) -> Path:
    from gru_edge.model import TrainConfig, train

    run = tmp_path_factory.mktemp("r2") / "run"
    train(TrainConfig(data=str(synthetic_csv), column="y", features=("a", "b", "c"), window=24, horizon=3,
                      units=64, layers=2, epochs=2, transform="none"), run)
    return run


def _convert_all(run: Path, out: Path):
    from gru_edge.conversion import convert
    from gru_edge.recipes import shipped_names

    return convert(run / "model.keras", shipped_names(), out)


@pytest.fixture(scope="session")
def r1_converted(r1_run, tmp_path_factory):
    return _convert_all(r1_run, tmp_path_factory.mktemp("r1-out"))


@pytest.fixture(scope="session")
def r2_converted(r2_run, tmp_path_factory):
    return _convert_all(r2_run, tmp_path_factory.mktemp("r2-out"))


@pytest.fixture(scope="session")
def cls_run(tmp_path_factory) -> Path:
    """A sequence classifier trained on generated data with a known answer (3 classes)."""
    from gru_edge.data import write_classification_csv
    from gru_edge.model import TrainConfig, train

    folder = tmp_path_factory.mktemp("cls")
    csv = write_classification_csv(folder / "classes.csv")
    run = folder / "run"
    train(TrainConfig(data=str(csv), task="classification", column="label", features=("a", "b"), window=12,
                      units=16, epochs=40), run)
    return run


@pytest.fixture(scope="session")
def r2_raw(r2_run, tmp_path_factory) -> dict[str, bytes]:
    """What TensorFlow's converter wrote for R2, per shipped recipe, before gru-edge's step ranges and compaction."""
    from gru_edge import card as card_, conversion, recipes

    keras_path = r2_run / "model.keras"
    card = card_.load(keras_path)
    chosen = [recipes.load(n) for n in recipes.shipped_names()]
    scratch = tmp_path_factory.mktemp("r2-raw")
    proc = conversion._run_worker(keras_path, chosen, card, card_.windows_file(keras_path, card), str(scratch))
    done, _, _ = conversion._read_events(proc, {r.name: r for r in chosen})
    return {name: Path(event["file"]).read_bytes() for name, event in done.items()}
