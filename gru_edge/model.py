"""Build and train the Keras GRU; save ``model.keras``, ``training.json`` and the windows it was trained on
(gru_edge.runs writes and reads that folder)."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gru_edge import __version__, data, outputs, shards
from gru_edge.errors import DataError
from gru_edge.io import quiet_tensorflow
from gru_edge.card import CARD, MODEL, TrainingCard
from gru_edge.runs import run_windows, write_run

DEFAULT_WINDOW, SHORT_WINDOW = 12, 4


@dataclass(frozen=True)
class TrainConfig:
    data: str = data.AIRLINE
    column: str | None = None
    features: tuple[str, ...] = ()
    window: int | None = None  # None: 12, or for 'auto' on a series without a season 4 or 12 (validation split)
    horizon: int = 1
    units: int = 32
    layers: int = 1
    epochs: int = 200  # at most: training stops early on the validation split (see ``patience``)
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    task: str = "regression"  # or "classification": the target column holds class indices
    transform: str | None = None  # None: the dataset's default; "auto": chosen on the validation split
    test_size: int | None = None  # None: the dataset's default
    season: int | None = None
    patience: int = 20  # epochs without a better validation loss before training stops; 0: no early stopping
    validation: float = 0.2  # share of the training part's tail that early stopping and 'auto' judge on
    distribute: str | None = None  # None: in memory on one device; else gru_edge.distributed.STRATEGIES
    devices: int | None = None  # --distribute mirrored: how many (default: every GPU)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    model_path: Path
    card_path: Path
    card: TrainingCard
    written_by: int | None = None  # a multi-worker job's worker that trained but does not write (None: written)

    @property
    def warnings(self) -> list[str]:
        """A forecaster that does not beat the naive or seasonal-naive forecast on the held-out part."""
        m = self.card.metrics
        return [f"the model does not beat the {name.replace('_', '-')} forecast on the held-out part (RMSE "
                f"{m['heldout_rmse']:.4g} vs {m[name + '_rmse']:.4g} {m['units']}): try --transform, --window or "
                "more data" for name in m.get("not_beaten_baselines", [])]

    def to_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "model": str(self.model_path), "card": str(self.card_path),
                "written": self.written_by is None,
                **{k: getattr(self.card, k) for k in ("metrics", "split", "seed", "transform", "transform_trials")},
                "epochs": self.card.model["epochs"], "warnings": self.warnings}


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
    """Return an uncompiled Keras GRU core: ``layers`` stacked GRU(units), then Dense(outputs) (softmax for
    classes). It reads transformed, scaled windows; gru_edge.framing.wrap puts it between raw units."""
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
    """Train on the chronological training part and write the model, training card and windows into ``run_dir``.

    The run folder is written whole or not at all (gru_edge.outputs); it is checked before training starts. Shards
    (a pattern, a folder, Parquet) and ``distribute`` train on a stream of windows (gru_edge.distributed)."""
    for name, value in (("window", DEFAULT_WINDOW if cfg.window is None else cfg.window), ("horizon", cfg.horizon), ("units", cfg.units),
                        ("layers", cfg.layers), ("epochs", cfg.epochs), ("batch-size", cfg.batch_size)):
        if value < 1:
            raise DataError(f"--{name} must be at least 1, got {value}.")
    if not (0 < cfg.learning_rate < 1):
        raise DataError(f"--learning-rate must be in (0, 1), got {cfg.learning_rate}.")
    if cfg.patience < 0 or not (0 < cfg.validation < 1):
        raise DataError(f"--patience must be >= 0 and the validation share in (0, 1); got {cfg.patience} and "
                        f"{cfg.validation}.")
    if cfg.task not in ("regression", "classification"):
        raise DataError(f"Unknown task '{cfg.task}'. Supported: regression, classification.")
    if cfg.devices is not None and cfg.distribute != "mirrored":
        raise DataError("--devices is for --distribute mirrored (multi-worker uses each process's devices).")
    if cfg.distribute is not None or shards.is_shards(str(cfg.data)):
        from gru_edge import distributed

        return distributed.train(replace(cfg, distribute=cfg.distribute or "none"), run_dir, log)
    classify = cfg.task == "classification"
    series = data.load_series(cfg.data, cfg.column, cfg.features)
    spec, test_size, season = _resolve_defaults(cfg, len(series))
    if classify:
        spec, season = "none", None  # labels are not transformed; there is no seasonal forecast
    if test_size >= len(series):
        raise DataError(f"--test-size {test_size} leaves no training data in a series of {len(series)} values.")
    n_train = len(series) - test_size
    candidates = data.candidate_transforms(series, n_train, season) if spec == data.AUTO else [spec]
    # 'auto' on a series without a season also compares a short window: a yearly series of ~100 values has ~50
    # windows of 12 to learn from, and its memory is often a few steps (LakeHuron: AR(2)).
    windows = [cfg.window] if cfg.window is not None else [SHORT_WINDOW, DEFAULT_WINDOW] if (
        spec == data.AUTO and not (season and season > 1) and not classify) else [DEFAULT_WINDOW]
    prepared, errors = [], []  # errors in the candidates' order: the first is raised when none is left
    for c in candidates:
        try:
            transform = data.fit_transform(series, n_train, c)  # once, whatever the window
        except DataError as e:  # e.g. too few values: 'auto' tries the others
            errors.append((f"transform '{c}'", e))
            continue
        for w in windows:
            try:
                win = data.make_class_windows(series, transform, w, test_size) if classify else \
                    data.make_windows(series, transform, w, cfg.horizon, test_size)
            except DataError as e:  # e.g. too few rows for a seasonal difference
                errors.append((f"transform '{c}', window {w}", e))
                continue
            prepared.append((transform, win))
    if not prepared:
        raise errors[0][1]
    for what, e in errors:
        log(f"{what} skipped: {e}")
    with outputs.staged(run_dir, outputs.RUN) as stage:
        model, card, win = _fit(cfg, series, prepared, test_size, season, spec, log)
        card = write_run(stage, model, run_windows(win), card)
    run_dir = Path(run_dir)
    return TrainResult(run_dir, run_dir / MODEL, run_dir / CARD, card)


def baseline_verdicts(metrics: dict) -> dict:
    """Which of the naive and seasonal-naive baselines in ``metrics`` the held-out RMSE beats, and which not."""
    baselines = {k: metrics[k] for k in ("naive_rmse", "seasonal_naive_rmse") if k in metrics}
    return {"beaten_baselines": sorted(k[:-5] for k, b in baselines.items() if metrics["heldout_rmse"] < b),
            "not_beaten_baselines": sorted(k[:-5] for k, b in baselines.items() if not metrics["heldout_rmse"] < b)}


def versions(keras, tf) -> dict:
    """The versions a training card records."""
    return {"gru-edge": __version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _validation_rows(cfg: TrainConfig, n_train: int) -> int:
    """The training part's last values whose windows early stopping (and 'auto') judge on."""
    return max(cfg.horizon, int(round(cfg.validation * n_train)))


def _epochs(keras, log, total: int):
    """A Keras callback that reports each epoch's losses through ``log`` (stderr in the CLI; silent under -q)."""

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            val = f", validation loss {logs['val_loss']:.4g}" if "val_loss" in logs else ""
            log(f"  epoch {epoch + 1}/{total}: loss {logs.get('loss', float('nan')):.4g}{val}")

    return Progress()


def _fit_core(cfg: TrainConfig, win: data.Windows, fit: np.ndarray, val: np.ndarray, n_out: int, classify: bool,
              keras, log=lambda msg: None):
    """Fit the core on the windows ``fit``, stop when the loss on ``val`` has not improved for ``patience`` epochs
    and keep the best weights. Returns (model, best epoch count, epochs run)."""
    model = _compiled(cfg, win, n_out, classify, keras)
    callbacks = [keras.callbacks.EarlyStopping(patience=cfg.patience, restore_best_weights=True)] \
        if cfg.patience else []
    callbacks.append(_epochs(keras, log, cfg.epochs))
    history = model.fit(win.train_x[fit], win.train_y[fit], validation_data=(win.train_x[val], win.train_y[val]),
                        epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0, callbacks=callbacks)
    losses = history.history["val_loss"]
    best = int(np.nanargmin(losses)) + 1 if cfg.patience and np.isfinite(losses).any() else len(losses)
    return model, best, len(losses)


def _shrink(core, x: np.ndarray, y: np.ndarray) -> float:
    """How far to trust the core's predicted change on the validation windows: the least-squares factor in [0, 1]
    on its scaled output (0: always the training part's mean: of the change, the naive forecast with drift, for a differenced
    transform; 1: as trained).
    A core that learned noise on a series close to a random walk is pulled towards the forecast it cannot beat."""
    p = np.asarray(core(x, training=False), np.float64)
    pp = float(np.sum(p * p))
    return 1.0 if pp == 0 else float(np.clip(np.sum(p * y) / pp, 0.0, 1.0))


def _shrink_head(core, factor: float) -> None:
    """Scale the linear head's kernel and bias by ``factor`` (the scaled output times ``factor``)."""
    if factor != 1.0:
        head = core.layers[-1]
        head.set_weights([w * factor for w in head.get_weights()])


def _compiled(cfg: TrainConfig, win: data.Windows, n_out: int, classify: bool, keras):
    keras.utils.set_random_seed(cfg.seed)
    model = build_model(win.train_x.shape[1], win.train_x.shape[2], cfg.units, cfg.layers, n_out, classes=classify)
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy" if classify else "mse")
    return model


def _score(model, framing_, win: data.Windows, rows: np.ndarray, classify: bool) -> float:
    """Validation score in the data's units (RMSE, or 1 - accuracy) of the framed model on windows ``rows``."""
    from gru_edge import framing

    full = framing.wrap(model, framing_, model.name)
    pred = np.asarray(full(win.train_raw[rows], training=False))
    if classify:
        return float(np.mean(pred.argmax(axis=1) != win.train_truth[rows, 0]))
    return data.rmse(pred, win.train_truth[rows])


def _fit(cfg: TrainConfig, series: data.Series, prepared: list, test_size: int, season: int | None, spec: str,
         log) -> tuple:
    """Choose the transform (when 'auto'), find the epoch count on the validation split, then train the final
    model on the whole training part; return it framed (raw units in and out) with its training card."""
    with quiet_tensorflow():
        import keras
        import tensorflow as tf
    from gru_edge import framing

    classify = cfg.task == "classification"
    n_classes = int(data.class_labels(series).max()) + 1 if classify else 0
    n_out = n_classes if classify else cfg.horizon
    tf.config.experimental.enable_op_determinism()
    n_train = len(series) - test_size
    v = _validation_rows(cfg, n_train)
    started = time.perf_counter()
    trials = []
    for transform, win in prepared:
        # A window is validation when its first target lies in the training part's last v values (the same
        # values for every candidate transform, so their scores compare); it is fitted on when all its targets lie
        # before them.
        val = win.train_first_target >= n_train - v
        fit = win.train_first_target + (1 if classify else cfg.horizon) <= n_train - v
        if val.sum() < 1 or fit.sum() < 2:
            if len(prepared) > 1:
                log(f"transform '{transform.spec}' skipped: too few windows to hold out {v} values")
            continue
        _, w, n_in = win.train_x.shape
        fr = framing.from_transform(transform, w, n_in, cfg.horizon, target=not classify)
        log(f"training {cfg.layers}x GRU({cfg.units}) on {int(fit.sum())} windows of {w}, transform "
            f"'{transform.spec}', up to {cfg.epochs} epochs, validating on {int(val.sum())}")
        core, best, ran = _fit_core(cfg, win, fit, val, n_out, classify, keras, log)
        shrink = 1.0 if classify else _shrink(core, win.train_x[val], win.train_y[val])
        _shrink_head(core, shrink)
        trials.append({"transform": transform.spec, "window": w, "validation_score": _score(core, fr, win, val, classify),
                       "best_epochs": best, "epochs_run": ran, "shrink": shrink, "_prep": (transform, win, fr)})
    if not trials:
        raise DataError(f"Too few training windows to hold out the last {v} training values for early stopping and "
                        "the transform's choice; give more data, or a smaller --window or --test-size.")
    chosen = min(trials, key=lambda t: t["validation_score"])
    transform, win, fr = chosen["_prep"]
    epochs = chosen["best_epochs"]
    log(f"final model: transform '{transform.spec}', window {fr.window}, {epochs} epochs on all "
        f"{len(win.train_x)} training windows")
    core = _compiled(cfg, win, n_out, classify, keras)
    history = core.fit(win.train_x, win.train_y, epochs=epochs, batch_size=cfg.batch_size, shuffle=True,
                       verbose=0, callbacks=[_epochs(keras, log, epochs)]).history["loss"]
    _shrink_head(core, chosen["shrink"])
    seconds = time.perf_counter() - started
    model = framing.wrap(core, fr, core.name)

    pred = np.asarray(model.predict(win.test_raw, verbose=0))
    unit = series.column
    if classify:
        labels = win.test_y[:, 0].astype(np.int64)
        majority = np.bincount(win.train_y[:, 0].astype(np.int64)).argmax()
        metrics = {"heldout_accuracy": float(np.mean(pred.argmax(axis=1) == labels)),
                   "majority_class_accuracy": float(np.mean(labels == majority)), "classes": n_classes}
        task = {"kind": "classification", "metric": "accuracy", "classes": n_classes}
    else:
        truth = win.test_truth
        metrics = {"heldout_rmse": data.rmse(pred, truth),
                   "naive_rmse": data.rmse(data.naive_forecast(series, win.test_first_target, cfg.horizon), truth),
                   "units": unit}
        task = {"kind": "regression", "metric": "rmse", "units": unit}
        if season:
            metrics["seasonal_naive_rmse"] = data.rmse(
                data.seasonal_naive_forecast(series, win.test_first_target, cfg.horizon, season), truth)
        metrics |= baseline_verdicts(metrics)
    metrics |= {"final_train_loss": float(history[-1]), "train_seconds": round(seconds, 2)}
    raw_min = win.train_raw.reshape(-1, win.train_raw.shape[2]).min(axis=0)
    raw_max = win.train_raw.reshape(-1, win.train_raw.shape[2]).max(axis=0)
    card = TrainingCard(**{
        "task": task,
        "data": {"source": series.source, "sha256": series.sha256, "rows": len(series), "column": series.column,
                 "features": list(series.feature_names)},
        "window": fr.window, "input_steps": fr.input_steps, "horizon": cfg.horizon,
        "n_features": int(win.train_x.shape[2]),
        "split": {"kind": "chronological", "train_rows": n_train, "heldout_rows": test_size,
                  "validation_rows": v, "train_windows": len(win.train_x), "heldout_windows": len(win.test_x),
                  "heldout_first_target": int(win.test_first_target[0])},
        "transform": transform.to_dict() | {"requested": spec},
        "transform_trials": [{k: t[k] for k in t if not k.startswith("_")} for t in trials],
        "framing": fr.to_dict(),
        "input_range": {"min": [float(v) for v in raw_min], "max": [float(v) for v in raw_max]},
        "model": {"units": cfg.units, "layers": cfg.layers, "epochs": epochs, "max_epochs": cfg.epochs,
                  "shrink": chosen["shrink"],
                  "patience": cfg.patience, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate},
        "season": season,
        "seed": cfg.seed,
        "metrics": metrics,
        "versions": versions(keras, tf),
    })  # files: the sha256 of the model and windows files it describes (write_run)
    return model, card, win
