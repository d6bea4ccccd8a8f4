"""How fast can an unrolled GRU be on this machine? The matrix-product floor beside gru-edge and TensorFlow's unroll.

The floor graph keeps every matrix product of the model and drops the gate arithmetic: per layer one input
projection for all steps, cut into steps the way gru-edge cuts them, then per step one FULLY_CONNECTED of the state
with all three recurrent matrices, one ADD, one TANH and one SPLIT (4 operators where a GRU step needs 11). Its
outputs mean nothing; its time is what the matrix products and the per-step dispatch alone cost when XNNPACK runs
them: no unrolled GRU graph whose products XNNPACK runs can be faster.

    python benchmarks/floor.py MODEL.keras [--threads 1] [--iterations 200] [--rounds 5]

Needs the train extra. Prints one markdown table: file size and median µs with ai-edge-litert's Interpreter and with
CompiledModel + XNNPACK's weight cache (as in `gru-edge bench`), each also as a ratio to the plain unrolled graph.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from gru_edge import bench, convert as convert_mod, lowering
from gru_edge.compact import compact
from gru_edge.io import quiet_tensorflow
from gru_edge.runs import load_model


def floor_model(model_path: Path, out: Path) -> Path:
    """Write the matrix-product floor of the Keras model at ``model_path`` (batch 1, float32) to ``out``."""
    with quiet_tensorflow():
        import tensorflow as tf
    lowered = lowering.read_model(load_model(model_path))
    t = lowered.time_steps

    def serving_default(sequence):
        x = sequence
        for spec in lowered.layers:
            if isinstance(spec, lowering.DenseSpec):
                x = tf.matmul(tf.reshape(x, [1, -1]), spec.kernel) + spec.bias
                continue
            steps = lowering.split_steps(tf, tf.matmul(x, spec.kernel) + spec.bias_in, t)
            h, outs = tf.zeros([1, 1, spec.units]), []
            for step in steps:
                h = tf.split(tf.tanh(tf.matmul(h, spec.recurrent) + step), 3, axis=-1)[0]
                outs.append(h)
            x = lowering.concat_steps(tf, outs) if spec.return_sequences else h
        return {lowered.output_name: x}

    fn = tf.function(serving_default, autograph=False,
                     input_signature=[tf.TensorSpec([1, t, lowered.features], tf.float32, name=lowered.input_name)])
    holder = tf.Module()
    holder.serving_default = fn
    with quiet_tensorflow():
        converted = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], holder).convert()
    out.write_bytes(compact(converted)[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a .keras GRU model (e.g. R2 from benchmarks/r1_r2.py --out DIR)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gru-edge-floor-") as tmp:
        tmp = Path(tmp)
        paths = {
            "matrix-product floor (4 ops per step)": floor_model(args.model, tmp / "floor.tflite"),
            "gru-edge float32": convert_mod.convert(args.model, ["float32"], tmp / "ours").models[0].path,
            "TF plain, unrolled, float32": convert_mod.convert(
                args.model, [bench.plain_recipe("plain-unrolled-float32")], tmp / "plain").models[0].path,
        }
        timed = bench.time_files(paths, args.threads, args.iterations, args.rounds)
        base = timed["TF plain, unrolled, float32"]
        print(f"{args.model}, batch 1, {args.threads} thread(s)\n")
        print("| graph | file | Interpreter µs | vs plain | weight cache µs | vs plain |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, path in paths.items():
            us, cached = timed[name]
            print(f"| {name} | {path.stat().st_size / 1024:.1f} KiB | {us:.1f} | {us / base[0]:.2f}× | "
                  f"{cached:.1f} | {cached / base[1]:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
