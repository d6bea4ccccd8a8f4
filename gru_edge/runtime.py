"""Run a ``.tflite`` with a LiteRT interpreter (ai-edge-litert's by default; tflite-runtime's or TensorFlow's when
asked, see gru_edge.runtimes), batch by batch, in this process or in a child process (``run_isolated``, for every
model a command loads). No TensorFlow unless it is the runtime chosen."""

from __future__ import annotations

import contextlib
import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gru_edge.errors import GpuUnavailable, GruEdgeError, ParityError
from gru_edge.io import child_command, native_stderr, signal_name
from gru_edge.names import FRAME, SERVE, STEP, is_state, state_out


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

    def __init__(self, model: bytes | Path, signature: str | None = None, threads: int = 1, runtime: str = "litert"):
        from gru_edge.runtimes import interpreter_class

        name = Path(model).name if isinstance(model, Path) else "model"
        content = Path(model).read_bytes() if isinstance(model, Path) else model
        try:
            with native_stderr() as log, contextlib.redirect_stderr(io.StringIO()):  # TensorFlow logs as it imports
                Interpreter = interpreter_class(runtime)  # noqa: N806
                self._interp = Interpreter(model_content=content, num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            what = "LiteRT's standard interpreter" if runtime == "litert" else f"The {runtime} interpreter"
            reason = " ".join(str(e).split())[:300]
            raise ParityError(f"{what} cannot load {name}: {reason}") from None
        # The runtimes log this line when XNNPACK takes the graph; an emulated ARM64 CPU that LiteRT cannot identify
        # runs without it (different int8 kernels), so the report says which.
        self.xnnpack = "XNNPACK delegate" in (log[0] if log else "")
        sigs = self._interp.get_signature_list()
        if not sigs:
            raise ParityError(f"{name} has no signatures; convert it with gru-edge convert.")
        self.signatures = list(sigs)
        self.signature = signature or (SERVE if SERVE in sigs else next(iter(sigs)))
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
        """Outputs [N, ...] flattened to [N, O] rows (a parity bundle's form); ``x`` [N, T, F], or [N, T, 1] for a
        model that takes token ids [B, T]."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self.input_shape[1:] and (
                len(self.input_shape) != 2 or x.shape[1:] != (self.input_shape[1], 1)):
            raise ParityError(f"Input shape {tuple(x.shape)} does not match the model's input "
                              f"{self.input_name} {('N',) + self.input_shape[1:]}.")
        x = x.reshape(len(x), *self.input_shape[1:])
        outs = in_batches(x, self.batch_size, lambda chunk: self._run(**{self.input_name: chunk}))
        return {k: outs[k].reshape(len(x), -1) if k in outs else np.zeros((0,)) for k in self.output_names}

    @property
    def has_step(self) -> bool:
        return STEP in self.signatures

    def run_steps(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Feed each sequence one time step at a time through the ``step`` signature (see ``run_steps``)."""
        step = self._interp.get_signature_runner(STEP)
        return run_steps(lambda feed: step(**feed), step.get_input_details(), x)


def run_steps(step, details: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Feed [N, T, F] sequences to a ``step`` signature one time step at a time, state starting at zero.

    ``step`` maps {input name: array} to {output name: array}; ``details`` are its inputs' details (shapes).
    Returns the outputs after the last step, named like the full-sequence signature's outputs.
    """
    states = sorted(k for k in details if is_state(k))

    def stream(chunk: np.ndarray) -> dict[str, np.ndarray]:
        state, out = {k: np.zeros(details[k]["shape"], np.float32) for k in states}, {}
        for t in range(chunk.shape[1]):
            out = step({FRAME: np.ascontiguousarray(chunk[:, t, :]), **state})
            state = {k: out[state_out(k)] for k in states}
        return {k: v for k, v in out.items() if not is_state(k)}

    return in_batches(x, details[FRAME]["shape"][0], stream)


# ---- LiteRT in a child process ------------------------------------------------------------------------------------
# LiteRT is native code: a damaged or hostile .tflite (or quantization parameters it cannot handle, such as NaN
# scales) can crash it. Every command that loads a model the user gave or the converter made runs it here, in a
# child process, so a crash becomes a one-line message instead of taking gru-edge down.


@dataclass(frozen=True)
class IsolatedRun:
    """What a child process got from one model: its main signature's names, and the outputs."""

    signature: str
    input_name: str
    output_names: tuple[str, ...]
    outputs: dict[str, np.ndarray]
    stepped: dict[str, np.ndarray] | None  # the ``step`` signature fed one time step at a time, if the model has one
    fully_accelerated: bool | None = None  # CompiledModel runs only
    runtime: str = ""  # "ai-edge-litert 2.3.0 Interpreter": what ran it


def run_isolated(model: Path | bytes, inputs: np.ndarray | None, signature: str | None = None, *,
                 accelerator: str = "interpreter", precision: str = "fp16", threads: int = 1,
                 name: str | None = None, runtime: str = "litert") -> IsolatedRun:
    """Load ``model`` and run ``inputs`` [N, T, F] (None: a zero probe of one batch) through its main signature
    and, if it has one, its ``step`` signature, in a child process.

    ``accelerator``: "interpreter" (the Interpreter of ``runtime``, see gru_edge.runtimes; XNNPACK) or "gpu"
    (ai-edge-litert's CompiledModel, GPU with CPU fallback; GpuUnavailable when there is no usable GPU). ParityError
    when the runtime refuses the model or crashes; RuntimeMissing when ``runtime`` is not installed."""
    from gru_edge.runtimes import check_installed

    if accelerator == "interpreter":
        check_installed(runtime)  # a missing runtime is named here, not as a child's failure
    import subprocess
    import tempfile

    name = name or (Path(model).name if isinstance(model, Path) else "the converted model")
    with tempfile.TemporaryDirectory(prefix="gru-edge-run-") as tmp:
        tmp = Path(tmp)
        if isinstance(model, (bytes, bytearray)):
            (tmp / "model.tflite").write_bytes(model)
            model = tmp / "model.tflite"
        if inputs is not None:
            np.save(tmp / "inputs.npy", np.ascontiguousarray(inputs, np.float32))
        (tmp / "request.json").write_text(json.dumps({
            "model": str(Path(model).resolve()), "signature": signature, "accelerator": accelerator,
            "precision": precision, "threads": threads, "inputs": inputs is not None, "runtime": runtime}))
        proc = subprocess.run(child_command("gru_edge.runtime", tmp), cwd=tmp, capture_output=True, text=True)
        result = tmp / "result.json"
        if proc.returncode != 0 or not result.is_file():
            how = (f"crashed ({signal_name(proc.returncode)})" if proc.returncode < 0
                   else f"exited with status {proc.returncode}")
            last = (proc.stderr.strip().splitlines() or [""])[-1][:200]
            raise ParityError(f"LiteRT {how} while loading or running {name}; gru-edge itself was not affected. "
                              "The file may be damaged, or hold values LiteRT cannot handle (e.g. NaN quantization "
                              f"scales): convert it again.{f' Last message: {last}' if last else ''}")
        doc = json.loads(result.read_text())
        if doc.get("error"):
            raise (GpuUnavailable if doc.get("gpu_unavailable") else ParityError)(doc["error"])
        with np.load(tmp / "outputs.npz") as z:
            arrays = {k: z[k] for k in z.files}
    outputs = {k: arrays[f"out/{k}"] for k in doc["output_names"]}
    stepped = {k[5:]: v for k, v in arrays.items() if k.startswith("step/")} if doc["has_step"] else None
    return IsolatedRun(doc["signature"], doc["input_name"], tuple(doc["output_names"]), outputs, stepped,
                       doc.get("fully_accelerated"), doc.get("runtime", ""))


def _child(folder: Path) -> None:
    """The child's side of ``run_isolated``: writes result.json and outputs.npz into ``folder``."""
    req = json.loads((folder / "request.json").read_text())
    model = Path(req["model"])
    try:
        compiled = req["runtime"] == "litert-compiled"
        runner = Runner(model, req["signature"], threads=req["threads"], runtime="litert" if compiled else
                        req["runtime"])
        shape = runner.input_shape
        x = np.load(folder / "inputs.npy") if req["inputs"] else np.zeros(
            (shape[0], shape[1], int(np.prod(shape[2:]))), np.float32)
        from gru_edge.runtimes import describe

        doc = {"signature": runner.signature, "input_name": runner.input_name, "output_names": runner.output_names,
               "has_step": runner.has_step,
               "runtime": describe(req["runtime"]) + ("" if compiled else " + XNNPACK" if runner.xnnpack
                                                      else " without XNNPACK") + f" on {platform.machine()}"}
        if req["accelerator"] == "gpu":
            from gru_edge.gpu import gpu_outputs

            run = gpu_outputs(model, x, req["precision"])
            outputs, stepped, doc["fully_accelerated"] = run.outputs, run.stepped, run.fully_accelerated
        elif compiled:
            from gru_edge.gpu import run_compiled

            run = run_compiled(model, x, accelerator="cpu")
            if not run.available:
                raise ParityError(f"LiteRT's CompiledModel cannot run {model.name} on the CPU: {run.reason}")
            outputs, stepped = run.outputs, run.stepped
        else:
            outputs = runner.run(x)
            stepped = runner.run_steps(x) if runner.has_step else None
    except GruEdgeError as e:
        (folder / "result.json").write_text(json.dumps({"error": str(e),
                                                        "gpu_unavailable": getattr(e, "exit_code", 1) == 3}))
        return
    arrays = {f"out/{k}": v for k, v in outputs.items()}
    arrays |= {f"step/{k}": v for k, v in (stepped or {}).items()}
    np.savez(folder / "outputs.npz", **arrays)
    (folder / "result.json").write_text(json.dumps(doc))


if __name__ == "__main__":
    import sys

    _child(Path(sys.argv[1]))
