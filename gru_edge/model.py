"""Build and train the Keras GRU; save ``model.keras``, ``training.json`` and the windows it was trained on."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import __version__, data
from gru_edge.errors import DataError, ModelError
from gru_edge.io import atomic_write_text, quiet_tensorflow
from gru_edge.lowering import SUPPORTED_LAYERS

CARD = "training.json"
WINDOWS = "windows.npz"


@dataclass(frozen=True)
class TrainConfig:
    data: str = data.AIRLINE
    column: str | None = None
    features: tuple[str, ...] = ()
    window: int = 12
    horizon: int = 1
    units: int = 32
    layers: int = 1
    epochs: int = 200
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    task: str = "regression"  # or "classification": the target column holds class indices
    transform: str | None = None  # None: the dataset's default
    test_size: int | None = None  # None: the dataset's default
    season: int | None = None


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_path: Path
    card_path: Path
    card: dict

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "model": str(self.model_path), "card": str(self.card_path),
                **{k: self.card[k] for k in ("metrics", "split", "seed")}}


def _resolve_defaults(cfg: TrainConfig, n: int) -> tuple[str, int, int | None]:
    builtin = data.BUILTIN_DEFAULTS.get(cfg.data)
    if builtin:
        transform, test_size, season = builtin["transform"], builtin["test_size"], builtin["season"]
    else:
        transform = data.CSV_DEFAULTS["transform"]
        test_size = max(1, int(round(n * data.CSV_DEFAULTS["test_fraction"])))
        season = data.CSV_DEFAULTS["season"]
    return (cfg.transform or transform, cfg.test_size or test_size,
            cfg.season if cfg.season is not None else season)


def build_model(window: int, n_features: int, units: int, layers: int, outputs: int, classes: bool = False):
    """Return an uncompiled Keras GRU: ``layers`` stacked GRU(units), then Dense(outputs) (softmax for classes)."""
    import keras

    inputs = keras.Input((window, n_features), name="sequence")
    x = inputs
    for i in range(layers):
        x = keras.layers.GRU(units, return_sequences=i < layers - 1, name=f"gru_{i}")(x)
    if classes:
        return keras.Model(inputs, keras.layers.Dense(outputs, activation="softmax", name="classes")(x),
                           name="gru_classifier")
    return keras.Model(inputs, keras.layers.Dense(outputs, name="forecast")(x), name="gru_forecaster")


def train(cfg: TrainConfig, run_dir: Path, log=lambda msg: None) -> TrainResult:
    """Train on the chronological training part and write the model, training card and windows into ``run_dir``."""
    for name, value in (("window", cfg.window), ("horizon", cfg.horizon), ("units", cfg.units),
                        ("layers", cfg.layers), ("epochs", cfg.epochs)):
        if value < 1:
            raise DataError(f"--{name} must be at least 1, got {value}.")
    if cfg.task not in ("regression", "classification"):
        raise DataError(f"Unknown task '{cfg.task}'. Supported: regression, classification.")
    classify = cfg.task == "classification"
    series = data.load_series(cfg.data, cfg.column, cfg.features)
    spec, test_size, season = _resolve_defaults(cfg, len(series))
    if classify:
        spec, season = "none", None  # labels are not transformed; there is no seasonal forecast
    if test_size >= len(series):
        raise DataError(f"--test-size {test_size} leaves no training data in a series of {len(series)} values.")
    transform = data.fit_transform(series, len(series) - test_size, spec)
    if classify:
        win = data.make_class_windows(series, transform, cfg.window, test_size)
        n_classes = int(data.class_labels(series).max()) + 1
    else:
        win = data.make_windows(series, transform, cfg.window, cfg.horizon, test_size)

    with quiet_tensorflow():
        import keras
        import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model(cfg.window, win.train_x.shape[2], cfg.units, cfg.layers,
                        n_classes if classify else cfg.horizon, classes=classify)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy" if classify else "mse")
    log(f"training {cfg.layers}x GRU({cfg.units}) on {len(win.train_x)} windows for {cfg.epochs} epochs")
    started = time.perf_counter()
    history = model.fit(win.train_x, win.train_y, epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True,
                        verbose=0)
    seconds = time.perf_counter() - started

    pred = model.predict(win.test_x, verbose=0)
    if classify:
        labels = win.test_y[:, 0].astype(np.int64)
        majority = np.bincount(win.train_y[:, 0].astype(np.int64)).argmax()
        metrics = {"heldout_accuracy": float(np.mean(pred.argmax(axis=1) == labels)),
                   "majority_class_accuracy": float(np.mean(labels == majority)), "classes": n_classes}
        task = {"kind": "classification", "metric": "accuracy", "classes": n_classes}
    else:
        truth = data.truth(series, win.test_first_target, cfg.horizon)
        metrics = {"heldout_rmse": data.rmse(transform.to_original(pred, series, win.test_first_target), truth),
                   "naive_rmse": data.rmse(data.naive_forecast(series, win.test_first_target, cfg.horizon), truth),
                   "units": "original"}
        task = {"kind": "regression", "metric": "rmse"}
    metrics |= {"final_train_loss": float(history.history["loss"][-1]), "train_seconds": round(seconds, 2)}
    if season:
        metrics["seasonal_naive_rmse"] = data.rmse(
            data.seasonal_naive_forecast(series, win.test_first_target, cfg.horizon, season), truth)

    run_dir.mkdir(parents=True, exist_ok=True)
    model_path = run_dir / "model.keras"
    tmp = run_dir / ".model.keras.tmp.keras"
    model.save(tmp)
    os.replace(tmp, model_path)
    with open(run_dir / (WINDOWS + ".tmp"), "wb") as fh:
        np.savez(fh, train_x=win.train_x, train_y=win.train_y, test_x=win.test_x, test_y=win.test_y,
                 test_first_target=win.test_first_target)
    os.replace(run_dir / (WINDOWS + ".tmp"), run_dir / WINDOWS)
    card = {
        "format": "gru-edge-training/1",
        "task": task,
        "data": {"source": series.source, "sha256": series.sha256, "rows": len(series), "column": series.column,
                 "features": list(series.feature_names)},
        "window": cfg.window, "horizon": cfg.horizon, "n_features": int(win.train_x.shape[2]),
        "split": {"kind": "chronological", "train_rows": len(series) - test_size, "heldout_rows": test_size,
                  "train_windows": len(win.train_x), "heldout_windows": len(win.test_x),
                  "heldout_first_target": int(win.test_first_target[0])},
        "transform": transform.to_dict(),
        "input_range": {"min": float(win.train_x.min()), "max": float(win.train_x.max())},
        "model": {"units": cfg.units, "layers": cfg.layers, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                  "learning_rate": cfg.learning_rate},
        "season": season,
        "seed": cfg.seed,
        "metrics": metrics,
        "windows_file": WINDOWS,
        "versions": {"gru-edge": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
    }
    card_path = run_dir / CARD
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    return TrainResult(run_dir, model_path, card_path, card)


def load_card(model_path: Path) -> dict | None:
    """Return the training card beside ``model_path`` (or None when there is none)."""
    path = Path(model_path).parent / CARD
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path} is not valid JSON ({e.msg}); retrain or remove it.") from None
    if card.get("format") != "gru-edge-training/1":
        raise ModelError(f"{path} is not a gru-edge training card (format {card.get('format')!r}).")
    return card


def load_windows(model_path: Path, card: dict) -> dict[str, np.ndarray]:
    path = Path(model_path).parent / card["windows_file"]
    if not path.is_file():
        raise ModelError(f"{path} is missing; it is written by 'gru-edge train' beside the model.")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_model(model_path: Path):
    """Load a ``.keras`` file with safe_mode on and check it is a model gru-edge can lower."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"Model file not found: {model_path}. Give a .keras file written by 'gru-edge train' "
                         "or keras.Model.save.")
    if model_path.suffix != ".keras":
        raise ModelError(f"{model_path.name} is not a .keras file; gru-edge reads Keras 3 '.keras' models.")
    with quiet_tensorflow():
        import keras
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"Cannot load {model_path.name} as a Keras model: {first[:200]}") from None
    check_model(model, model_path.name)
    return model


def check_model(model, name: str) -> None:
    """Raise ModelError unless the model is a chain of GRU layers ending in a Dense head."""
    kinds = [type(layer).__name__ for layer in model.layers]
    unsupported = [f"{layer.name} ({kind})" for layer, kind in zip(model.layers, kinds)
                   if kind not in SUPPORTED_LAYERS]
    if unsupported:
        raise ModelError(f"{name} is not a GRU model gru-edge supports: unsupported layer(s) "
                         f"{', '.join(unsupported)}. Allowed: {', '.join(SUPPORTED_LAYERS)}.")
    if "GRU" not in kinds:
        raise ModelError(f"{name} has no GRU layer (layers: {', '.join(kinds)}); gru-edge converts GRU models.")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(f"{name} has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
                         "gru-edge supports one sequence input and one output.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(f"{name} takes input shape {shape}; gru-edge needs (batch, time steps, features) with "
                         "fixed time steps and features.")
