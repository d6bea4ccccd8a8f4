"""The run folder ``gru-edge train`` writes (``model.keras``, ``training.json``, ``windows.npz``) and how the later
stages read it: the card bound to its model and windows by sha256, and the model checked to be one gru-edge can
lower."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gru_edge import data
from gru_edge.errors import ModelError
from gru_edge.io import quiet_tensorflow, sha256_file
from gru_edge.lowering import SUPPORTED_LAYERS

MODEL = "model.keras"
CARD = "training.json"
WINDOWS = "windows.npz"
CARD_FORMAT = "gru-edge-training/3"  # /2: the card names its model's and windows' sha256; /3: raw units in and out


def write_run(folder: Path, model, win: data.Windows, card: dict) -> None:
    """Write the run's three files into ``folder``; the card names the other two by their sha256. The windows are
    what the saved model reads and returns: raw values, targets in the data's units."""
    card.pop("_windows", None)
    model.save(folder / MODEL)
    with open(folder / WINDOWS, "wb") as fh:
        np.savez(fh, train_x=win.train_raw, train_y=win.train_truth, test_x=win.test_raw, test_y=win.test_truth,
                 test_first_target=win.test_first_target)
    card["files"] = {name: sha256_file(folder / name) for name in (MODEL, WINDOWS)}
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")


def load_card(model_path: Path) -> dict | None:
    """Return the training card beside ``model_path`` (or None when there is none), after checking that it was
    written for that model file (and, when the windows are read, for those windows)."""
    path = Path(model_path).parent / CARD
    if not path.is_file():
        return None
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ModelError(f"{path} is not valid JSON ({getattr(e, 'msg', type(e).__name__)}); train again or "
                         "remove it.") from None
    fmt = card.get("format") if isinstance(card, dict) else None
    if fmt in ("gru-edge-training/1", "gru-edge-training/2"):
        raise ModelError(f"{path} was written by an older gru-edge (its model reads scaled values, not the data's "
                         "units); train again (gru-edge train) to use it.")
    if fmt != CARD_FORMAT:
        raise ModelError(f"{path} is not a gru-edge training card (format {fmt!r}).")
    _check_bound(card, path, Path(model_path), MODEL)
    return card


def _check_bound(card: dict, card_path: Path, file: Path, role: str) -> None:
    want = (card.get("files") or {}).get(role)
    if want != sha256_file(file):
        raise ModelError(f"{card_path.name} in {card_path.parent} was written for another {role} than {file} "
                         f"(sha256 differs): the folder's files do not belong together. Train again, or move "
                         f"{file.name} to a folder of its own.")


def windows_file(model_path: Path, card: dict) -> Path:
    """The windows file beside ``model_path``, checked against the card that names it."""
    path = Path(model_path).parent / WINDOWS
    if not path.is_file():
        raise ModelError(f"{path} is missing; it is written by 'gru-edge train' beside the model.")
    _check_bound(card, path.parent / CARD, path, WINDOWS)
    return path


def load_windows(model_path: Path, card: dict) -> dict[str, np.ndarray]:
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
    _check_chain(model, name)
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(f"{name} takes input shape {shape}; gru-edge needs (batch, time steps, features) with "
                         "fixed time steps and features.")


def _check_chain(model, name: str) -> None:
    """Raise ModelError unless the model's graph, walked from its output back to its input, calls each of its layers
    exactly once, one after the other, in the order of ``model.layers``: the chain the lowering reads. A layer
    called twice (or a graph that branches) would be lowered into a model that computes something else."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    calls, tensor = [], model.outputs[0]
    while True:
        history = getattr(tensor, "_keras_history", None)
        if history is None or len(calls) > len(layers) + 1:
            break
        node = history.operation._inbound_nodes[history.node_index]
        if type(history.operation).__name__ == "InputLayer":
            break
        calls.append(history.operation)
        if type(history.operation).__name__ == "Unframe" and len(node.input_tensors) == 2 \
                and node.input_tensors[1] is model.inputs[0]:
            tensor = node.input_tensors[0]  # the forecast's levels come from the raw input window
            continue
        if len(node.input_tensors) != 1:
            raise ModelError(f"{name}: layer '{history.operation.name}' takes {len(node.input_tensors)} inputs; "
                             "gru-edge converts a chain of layers, each fed by the one before.")
        tensor = node.input_tensors[0]
    calls.reverse()
    if [id(c) for c in calls] != [id(layer) for layer in layers]:
        twice = sorted({c.name for c in calls if sum(c is d for d in calls) > 1})
        what = (f"calls layer(s) {', '.join(twice)} more than once" if twice else
                f"computes {' -> '.join(c.name for c in calls) or 'nothing'} but lists the layers "
                f"{' -> '.join(layer.name for layer in layers)}")
        raise ModelError(f"{name} {what}; gru-edge converts a chain in which each layer is called once, one after "
                         "the other, and refuses anything else rather than convert it into a model that computes "
                         "something different.")
