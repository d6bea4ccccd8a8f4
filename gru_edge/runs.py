"""The run folder ``gru-edge train`` writes (``model.keras``, ``training.json``, ``windows.npz``) and how the later
stages read it: the card bound to its model and windows by sha256, and the model checked to be one gru-edge can
lower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gru_edge import data
from gru_edge.card import MODEL, WINDOWS, TrainingCard, windows_file
from gru_edge.errors import ModelError
from gru_edge.graph import RECURRENT, all_layers
from gru_edge.io import quiet_tensorflow


def run_windows(win: data.Windows) -> dict[str, np.ndarray]:
    """What windows.npz holds: what the saved model reads and returns (raw values, targets in the data's units)."""
    return {"train_x": win.train_raw, "train_y": win.train_truth, "test_x": win.test_raw, "test_y": win.test_truth,
            "test_first_target": win.test_first_target}


def write_run(folder: Path, model, windows: dict[str, np.ndarray], card: TrainingCard) -> TrainingCard:
    """Write the run's three files into ``folder``; the card names the other two by their sha256. ``windows``
    (run_windows) are train_x/train_y, test_x/test_y and test_first_target (and test_shard for shards). Returns the
    card written."""
    model.save(folder / MODEL)
    with open(folder / WINDOWS, "wb") as fh:
        np.savez(fh, **windows)
    card = card.bound(folder)
    card.write(folder)
    return card


def load_windows(model_path: Path, card: TrainingCard) -> dict[str, np.ndarray]:
    path = windows_file(model_path, card)
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
    from gru_edge import framing

    framing.layers()  # registers gru-edge's Frame and Unframe layers for loading
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as e:  # Keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"Cannot load {model_path.name} as a Keras model: {first[:200]}") from None
    check_model(model, model_path.name)
    return model


def fingerprint(model) -> str:
    """sha256 of a Keras model's architecture and weights: names a model held in memory (a .keras file's own sha256
    changes with every save)."""
    import hashlib

    digest = hashlib.sha256(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def check_model(model, name: str) -> None:
    """Raise ModelError unless the model has a GRU layer (what else it holds is judged by gru_edge.graph.lower)."""
    kinds = [type(layer).__name__ for layer in all_layers(model)]
    if not RECURRENT & set(kinds):
        raise ModelError(f"{name} is not a GRU model: it has no GRU layer (layers: {', '.join(kinds)}); gru-edge "
                         "converts models with GRU, RNN(GRUCell) or Bidirectional(GRU) layers.")
