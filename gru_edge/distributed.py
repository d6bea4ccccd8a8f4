"""Train on shards streamed as windows, on one device or several (data parallelism through tf.distribute).

``gru-edge train --data 'logs/*.csv'`` (gru_edge.shards cuts the windows) and ``--distribute``:
- ``none``: the default device;
- ``mirrored``: every GPU of this machine (or ``--devices`` of them); without GPUs, the CPU split into ``--devices``
  logical devices (what the tests use, and a way to try a setup before renting GPUs);
- ``multi-worker``: one replica set per process, the processes named by TF_CONFIG (one host or several).

Keras 3's ``Model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so the loop is written
here, once, for every strategy: each replica's loss is divided by the global batch, the optimizer all-reduces the
gradients, and every process reads the same shuffled stream and keeps its share of each global batch (tf.data's
DATA auto-shard policy): workers always run the same number of steps. ``--batch-size`` is the global batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge import data, outputs, shards
from gru_edge.card import CARD, MODEL, TrainingCard
from gru_edge.errors import DataError
from gru_edge.io import quiet_tensorflow
from gru_edge.text import plural

STRATEGIES = ("none", "mirrored", "multi-worker")
SHUFFLE = 4096  # windows in tf.data's shuffle buffer: bounded, whatever the data's size


@dataclass(frozen=True)
class Placement:
    strategy: object
    kind: str
    where: str  # the devices or workers, in words
    chief: bool  # the process that evaluates and writes the run folder
    worker: int
    workers: int


def _cluster() -> tuple[int, int, bool]:
    """(this worker's index, worker count, chief?) from TF_CONFIG, or DataError saying what it must hold."""
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
               '"index": 0}}\'')
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DataError(f"--distribute multi-worker reads its cluster from TF_CONFIG, which is not set; e.g. "
                        f"{example}")
    try:
        doc = json.loads(raw)
        cluster, task = doc["cluster"], doc["task"]
        workers = list(cluster.get("chief", [])) + list(cluster["worker"])
        index, kind = int(task["index"]), task["type"]
        position = index if kind == "chief" else len(cluster.get("chief", [])) + index
        if kind not in ("chief", "worker") or not 0 <= position < len(workers):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DataError(f"TF_CONFIG is not a cluster of workers and this process's task; e.g. {example}") from None
    return position, len(workers), position == 0


# Waits on its stdin (closed by the worker once the cluster has formed); on timeout it says why and ends the worker,
# which TensorFlow keeps inside a native call holding the GIL (no Python thread or signal handler runs there).
_WATCHDOG = ("import os, select, signal, sys; ready = select.select([sys.stdin], [], [], float(sys.argv[2]))[0]; "
             "ready or (sys.stderr.write(sys.argv[3] + chr(10)), sys.stderr.flush(), "
             "os.kill(int(sys.argv[1]), signal.SIGKILL))")


def _join(tf, worker: int, workers: int):
    """MultiWorkerMirroredStrategy, once every worker has joined. TensorFlow waits for them without end, so a worker
    that never comes (a chief that refused its -o folder, a typo in a host name) ends this one after
    GRU_EDGE_CLUSTER_TIMEOUT seconds (default 600), with one line on stderr."""
    timeout = os.environ.get("GRU_EDGE_CLUSTER_TIMEOUT", "600")
    message = (f"Error: worker {worker}: the {workers} workers in TF_CONFIG did not all join within {timeout} s; "
               "start every worker (worker 0 stops early when it refuses its -o folder), or raise "
               "GRU_EDGE_CLUSTER_TIMEOUT.")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), timeout, message],
                                stdin=subprocess.PIPE)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except Exception as e:  # an address in use or not resolvable
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise DataError(f"--distribute multi-worker: TensorFlow could not form the cluster in TF_CONFIG: {first}") \
            from None
    finally:
        watchdog.stdin.close()
        watchdog.wait()


def place(kind: str, devices: int | None) -> Placement:
    """The tf.distribute strategy for ``kind``; call it before TensorFlow runs anything."""
    if kind not in STRATEGIES:
        raise DataError(f"Unknown --distribute '{kind}'. Allowed: {', '.join(STRATEGIES)}.")
    if devices is not None and kind != "mirrored":
        raise DataError("--devices is for --distribute mirrored (multi-worker uses each process's devices).")
    with quiet_tensorflow():
        import tensorflow as tf
    if kind == "none":
        return Placement(tf.distribute.get_strategy(), kind, "the default device", True, 0, 1)
    if kind == "multi-worker":
        worker, workers, chief = _cluster()
        strategy = _join(tf, worker, workers)
        return Placement(strategy, kind, f"worker {worker} of {workers} (TF_CONFIG), "
                         f"{strategy.num_replicas_in_sync} replicas in all", chief, worker, workers)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        n = devices or len(gpus)
        if n > len(gpus):
            raise DataError(f"--devices {n}: this machine has {len(gpus)} GPUs.")
        names = [f"/gpu:{i}" for i in range(n)]
    else:
        n = devices or 1
        if n > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            try:
                tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
            except RuntimeError:
                raise DataError("--devices splits the CPU into logical devices, which must happen before "
                                "TensorFlow starts; run 'gru-edge train' in a fresh process.") from None
        names = [f"/cpu:{i}" for i in range(n)]
    return Placement(tf.distribute.MirroredStrategy(names), kind, ", ".join(names), True, 0, 1)


def _dataset(tf, plan: shards.Plan, part: str, batch: int, seed: int, shuffle: bool):
    """``part``'s windows as (x, y) batches of ``batch``: shards interleaved four at a time, in a new order each
    epoch when ``shuffle``, and shuffled in a bounded buffer."""
    n = len(plan.shards.shards)
    features = 1 + len(plan.shards.features)

    def windows(i):
        for block in plan.blocks(plan.shards.shards[int(i)], part):
            yield block.x, block.y

    signature = (tf.TensorSpec((None, plan.window, features), tf.float32),
                 tf.TensorSpec((None, plan.horizon), tf.float32))
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed)
    # one window at a time from each of four shards in turn, then the shuffle buffer mixes them
    ds = ds.interleave(lambda i: tf.data.Dataset.from_generator(windows, args=(i,), output_signature=signature)
                       .unbatch(), cycle_length=min(n, 4))
    if shuffle:
        ds = ds.shuffle(SHUFFLE, seed=seed)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return ds.batch(batch, drop_remainder=shuffle).prefetch(2).with_options(options)


def _fit(tf, keras, cfg, plan: shards.Plan, placement: Placement, log):
    """The training loop: returns (core with the best validation loss's weights, its epoch, epochs run, head
    shrink, last training loss)."""
    from gru_edge.model import build_model

    strategy = placement.strategy
    features = 1 + len(plan.shards.features)
    with strategy.scope():
        keras.utils.set_random_seed(cfg.seed)
        core = build_model(plan.window, features, cfg.units, cfg.layers, cfg.horizon)
        optimizer = keras.optimizers.Adam(cfg.learning_rate)
        optimizer.build(core.trainable_variables)
    fit_ds = strategy.experimental_distribute_dataset(_dataset(tf, plan, "fit", cfg.batch_size, cfg.seed, True))
    val_ds = strategy.experimental_distribute_dataset(_dataset(tf, plan, "validation", cfg.batch_size, cfg.seed,
                                                               False))

    @tf.function
    def train_step(x, y):
        def replica(x, y):
            with tf.GradientTape() as tape:
                per_window = tf.reduce_mean(tf.square(core(x, training=True) - y), axis=1)
                loss = tf.nn.compute_average_loss(per_window, global_batch_size=cfg.batch_size)
            grads = tape.gradient(loss, core.trainable_variables)
            optimizer.apply_gradients(zip(grads, core.trainable_variables))
            return loss
        return strategy.reduce("SUM", strategy.run(replica, (x, y)), axis=None)

    @tf.function
    def val_step(x, y):
        def replica(x, y):
            p = core(x, training=False)
            return tf.stack([tf.reduce_sum(tf.square(p - y)), tf.reduce_sum(p * y), tf.reduce_sum(p * p),
                             tf.cast(tf.size(y), tf.float32)])
        return strategy.reduce("SUM", strategy.run(replica, (x, y)), axis=None)

    best = (np.nan, None, 0, 1.0)  # validation loss, weights, epoch, shrink
    loss = np.nan
    for epoch in range(1, cfg.epochs + 1):
        total, steps = tf.constant(0.0), 0
        for x, y in fit_ds:
            total += train_step(x, y)
            steps += 1
        sums = sum((val_step(x, y) for x, y in val_ds), tf.zeros(4)).numpy().astype(np.float64)
        loss, val_loss = float(total) / max(steps, 1), sums[0] / max(sums[3], 1)
        shrink = 1.0 if sums[2] == 0 else float(np.clip(sums[1] / sums[2], 0.0, 1.0))
        log(f"  epoch {epoch}/{cfg.epochs}: loss {loss:.4g}, validation loss {val_loss:.4g}")
        if not cfg.patience or val_loss < best[0] or (best[1] is None and np.isfinite(val_loss)):
            best = (val_loss, core.get_weights(), epoch, shrink)
        elif epoch - best[2] >= cfg.patience:
            break
    if best[1] is None:
        raise DataError(f"Training diverged: the validation loss was {best[0]} from the first epoch on. Try a "
                        "smaller --learning-rate, or --transform diff for a series that drifts.")
    return best[1], best[2], epoch, best[3], loss


def _evaluate(model, plan: shards.Plan) -> tuple[dict, dict]:
    """Held-out RMSE of the framed model and the baselines over every shard's hold-out, and the windows kept for
    the run folder (every k-th held-out window, at most shards.SAMPLE)."""
    sums = {"heldout": [0.0, 0], "naive": [0.0, 0], "seasonal_naive": [0.0, 0]}
    keep = {"test_x": [], "test_y": [], "test_first_target": [], "test_shard": []}
    for s, b, pick in plan.kept("heldout"):
        pred = np.asarray(model(b.raw, training=False), np.float64)
        for name, guess in (("heldout", pred), ("naive", b.naive), ("seasonal_naive", b.seasonal)):
            err = (guess - b.truth)[np.isfinite(guess)]
            sums[name][0] += float(err @ err)
            sums[name][1] += err.size
        for k, v in (("test_x", b.raw), ("test_y", b.truth), ("test_first_target", b.first),
                     ("test_shard", np.full(len(b.first), s))):
            keep[k].append(v[pick])
    rmse = {k: float(np.sqrt(v[0] / v[1])) for k, v in sums.items() if v[1]}
    return rmse, {k: np.concatenate(v) for k, v in keep.items()}


def _training_sample(plan: shards.Plan) -> dict:
    """Every k-th training window (at most shards.SAMPLE), raw: what int8 calibration reads."""
    xs, ys = [], []
    for _, b, pick in plan.kept("fit"):
        xs.append(b.raw[pick])
        ys.append(b.truth[pick])
    return {"train_x": np.concatenate(xs), "train_y": np.concatenate(ys).astype(np.float32)}


def train(cfg, run_dir: Path, log=lambda msg: None):
    """``gru-edge train`` on shards or with ``--distribute``: the run folder is what the in-memory path writes
    (model, card, a bounded sample of windows); only the chief writes it."""
    from gru_edge import framing
    from gru_edge.model import DEFAULT_WINDOW, TrainResult, _shrink_head, baseline_verdicts, build_model, versions
    from gru_edge.runs import write_run

    if cfg.task != "regression":
        raise DataError("Shards and --distribute train forecasters; classification trains from one CSV file.")
    spec = cfg.transform or "none"
    if spec.strip() == data.AUTO:
        raise DataError("--transform auto compares trained candidates on one series in memory; with shards or "
                        "--distribute give none, log, diff, diffN or a combination such as 'log,diff12'.")
    if str(cfg.data) == data.AIRLINE:
        raise DataError("--distribute trains on CSV or Parquet files; give --data FILE or a pattern such as "
                        "'logs/*.csv'.")
    found = shards.scan(str(cfg.data), cfg.column, cfg.features)
    fitted = shards.fit_transform(found, spec, cfg.test_size, cfg.validation, cfg.horizon)
    window = cfg.window or DEFAULT_WINDOW
    plan = shards.Plan(found, fitted.transform, window, cfg.horizon, cfg.test_size, cfg.validation, cfg.season)
    counts = {part: plan.count(part) for part in shards.PARTS}
    for shard in found.shards:
        if all(plan.span(shard, part)[0] > plan.span(shard, part)[1] for part in ("fit", "heldout")):
            log(f"note: {shard.path} gives no training or held-out window ({shard.rows} rows); it is left out")
    if counts["fit"] < cfg.batch_size or counts["validation"] < 1 or counts["heldout"] < 1:
        raise DataError(f"Too few windows in {len(found.shards)} shards of {found.rows} rows: {counts['fit']} to "
                        f"train on (--batch-size {cfg.batch_size} needs at least as many), {counts['validation']} "
                        f"to validate and {counts['heldout']} held out. Give more data, or a smaller --window, "
                        "--test-size or --batch-size.")
    # The chief's folder is checked before the cluster forms (a refusal ends the chief before it joins; the others
    # then give up after GRU_EDGE_CLUSTER_TIMEOUT, see _join).
    chief = cfg.distribute != "multi-worker" or _cluster()[2]
    with outputs.staged(run_dir, outputs.RUN) if chief else nullcontext() as stage:
        placement = place(cfg.distribute, cfg.devices)  # before TensorFlow runs anything
        with quiet_tensorflow():
            import keras
            import tensorflow as tf
        log(f"training {cfg.layers}x GRU({cfg.units}) on {counts['fit']} windows of {window} from "
            f"{len(found.shards)} shards ({found.rows} rows), transform '{fitted.transform.spec}', up to "
            f"{cfg.epochs} epochs, validating on {counts['validation']}; "
            f"{plural(placement.strategy.num_replicas_in_sync, 'replica')}: {placement.where}")
        started = time.perf_counter()
        weights, epochs, ran, shrink, loss = _fit(tf, keras, cfg, plan, placement, log)
        seconds = time.perf_counter() - started
        features = 1 + len(found.features)
        core = build_model(window, features, cfg.units, cfg.layers, cfg.horizon)  # plain variables, on any strategy
        core.set_weights(weights)
        _shrink_head(core, shrink)
        fr = framing.from_transform(fitted.transform, window, features, cfg.horizon)
        model = framing.wrap(core, fr, core.name)
        rmse, kept = _evaluate(model, plan)
        metrics = {"heldout_rmse": rmse["heldout"], "naive_rmse": rmse["naive"], "units": found.column}
        if "seasonal_naive" in rmse and cfg.season:
            metrics["seasonal_naive_rmse"] = rmse["seasonal_naive"]
        metrics |= baseline_verdicts(metrics) | {"final_train_loss": loss, "train_seconds": round(seconds, 2)}
        splits = [s.split(cfg.test_size, cfg.validation, cfg.horizon) for s in found.shards]
        card = TrainingCard(
            task={"kind": "regression", "metric": "rmse", "units": found.column},
            data={"source": str(cfg.data), "sha256": found.sha256, "rows": found.rows, "column": found.column,
                  "features": list(found.features), "shards": len(found.shards)},
            window=window, input_steps=fr.input_steps, horizon=cfg.horizon, n_features=features,
            split={"kind": "chronological per shard", "train_rows": fitted.train_rows,
                   "heldout_rows": found.rows - fitted.train_rows, "validation_rows": sum(v for _, v in splits),
                   "train_windows": counts["fit"], "validation_windows": counts["validation"],
                   "heldout_windows": counts["heldout"]},
            transform=fitted.transform.to_dict() | {"requested": spec}, transform_trials=[],
            framing=fr.to_dict(), input_range={"min": fitted.low, "max": fitted.high},
            model={"units": cfg.units, "layers": cfg.layers, "epochs": epochs, "epochs_run": ran,
                   "max_epochs": cfg.epochs, "shrink": shrink, "patience": cfg.patience,
                   "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
                   "distribute": {"strategy": placement.kind, "replicas": placement.strategy.num_replicas_in_sync,
                                  "workers": placement.workers}},
            season=cfg.season, seed=cfg.seed, metrics=metrics,
            versions=versions(keras, tf))
        if stage is not None:
            card = write_run(stage, model, _training_sample(plan) | kept, card)
    run_dir = Path(run_dir)
    return TrainResult(run_dir, run_dir / MODEL, run_dir / CARD, card,
                       written_by=None if placement.chief else placement.worker)
