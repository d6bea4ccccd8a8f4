"""Run a ``.tflite`` with ai-edge-litert's standard interpreter, batch by batch. No TensorFlow."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from gru_edge.errors import ParityError
from gru_edge.io import native_stderr


def in_batches(x: np.ndarray, batch: int, run) -> dict[str, np.ndarray]:
    """Call ``run`` on [batch, ...] slices of ``x`` (the last one zero-padded: the models' batch is fixed) and join
    its outputs, dropping the padded rows."""
    x = np.asarray(x, dtype=np.float32)
    outs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(x), batch):
        chunk = x[i: i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), np.float32)])
        for k, v in run(np.ascontiguousarray(chunk)).items():
            outs.setdefault(k, []).append(np.asarray(v)[:n])
    return {k: np.concatenate(v) for k, v in outs.items()}


class Runner:
    """A loaded model's signature runner; ``run`` takes [N, T, F] and pads the last batch to the fixed batch size."""

    def __init__(self, model: bytes | Path, signature: str | None = None, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        name = Path(model).name if isinstance(model, Path) else "model"
        content = Path(model).read_bytes() if isinstance(model, Path) else model
        try:
            with native_stderr(), contextlib.redirect_stderr(io.StringIO()):
                self._interp = Interpreter(model_content=content, num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ParityError(f"LiteRT's standard interpreter cannot load {name}: {str(e).strip()[:300]}") from None
        sigs = self._interp.get_signature_list()
        if not sigs:
            raise ParityError(f"{name} has no signatures; convert it with gru-edge convert.")
        self.signatures = list(sigs)
        self.signature = signature or ("serving_default" if "serving_default" in sigs else next(iter(sigs)))
        if self.signature not in sigs:
            raise ParityError(f"{name} has no signature '{self.signature}'; it has {', '.join(sigs)}.")
        self._run = self._interp.get_signature_runner(self.signature)
        inputs = self._run.get_input_details()
        if len(inputs) != 1:
            raise ParityError(f"{name} signature '{self.signature}' has {len(inputs)} inputs; expected one sequence "
                              "(the streaming 'step' signature is run with run_steps).")
        self.input_name, detail = next(iter(inputs.items()))
        self.input_shape = tuple(int(d) for d in detail["shape"])
        self.output_names = list(self._run.get_output_details())

    @property
    def batch_size(self) -> int:
        return self.input_shape[0]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self.input_shape[1:]:
            raise ParityError(f"Input shape {tuple(x.shape)} does not match the model's input "
                              f"{self.input_name} {('N',) + self.input_shape[1:]}.")
        outs = in_batches(x, self.batch_size, lambda chunk: self._run(**{self.input_name: chunk}))
        return {k: outs.get(k, np.zeros((0,))) for k in self.output_names}

    @property
    def has_step(self) -> bool:
        return "step" in self.signatures

    def run_steps(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Feed each sequence one time step at a time through the ``step`` signature (see ``run_steps``)."""
        step = self._interp.get_signature_runner("step")
        return run_steps(lambda feed: step(**feed), step.get_input_details(), x)


def run_steps(step, details: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Feed [N, T, F] sequences to a ``step`` signature one time step at a time, state starting at zero.

    ``step`` maps {input name: array} to {output name: array}; ``details`` are its inputs' details (shapes).
    Returns the outputs after the last step, named like the full-sequence signature's outputs.
    """
    states = sorted(k for k in details if k.startswith("state_"))

    def stream(chunk: np.ndarray) -> dict[str, np.ndarray]:
        state, out = {k: np.zeros(details[k]["shape"], np.float32) for k in states}, {}
        for t in range(chunk.shape[1]):
            out = step({"frame": np.ascontiguousarray(chunk[:, t, :]), **state})
            state = {k: out[f"{k}_out"] for k in states}
        return {k: v for k, v in out.items() if not k.startswith("state_")}

    return in_batches(x, details["frame"]["shape"][0], stream)
