import json
import subprocess
import sys

from gru_edge.bench import BenchResult, BenchRow


def test_bench_puts_every_path_side_by_side(r1_run, tmp_path):
    """Run as a user runs it (a process, -q, --json): stdout is one JSON document and stderr stays empty, native log
    lines included (LiteRT's accelerator registry logs from its destructors at exit)."""
    proc = subprocess.run([sys.executable, "-m", "gru_edge", "bench", str(r1_run / "model.keras"), "--to",
                           "float32,int8", "--iterations", "20", "--rounds", "1", "--json", "-q"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-2000:]
    doc = json.loads(proc.stdout)["result"]
    result = BenchResult(doc["model"], doc["threads"],
                         tuple(BenchRow(**{k: v for k, v in r.items() if k != "size_ratio"}) for r in doc["rows"]),
                         doc["convert_seconds"], doc["streaming"])
    names = [r.name for r in result.rows]
    assert names[:2] == ["gru-edge float32", "gru-edge int8"]
    assert {"plain-while-float32", "plain-unrolled-float32", "plain-unrolled-int8", "keras tf.function"} <= set(names)
    ours, plain = result.row("gru-edge float32"), result.row("plain-unrolled-float32")
    assert ours.median_us > 0 and ours.p90_us >= ours.median_us
    assert ours.cached_median_us > 0 and plain.cached_median_us > 0  # CompiledModel with XNNPACK's weight cache
    assert ours.size_bytes < plain.size_bytes  # weights stored once
    assert result.row("gru-edge int8").size_bytes < result.row("plain-unrolled-int8").size_bytes
    assert result.row("plain-while-int8").note == "converter crashed"
    assert result.streaming["time_steps"] == 24 and result.streaming["step_us"] > 0
    # every size figure agrees with convert's and inspect's
    from gru_edge import tflite_model
    from gru_edge.conversion import convert

    made = convert(r1_run / "model.keras", ["float32", "int8"], tmp_path / "models")
    for m in made.models:
        row = result.row(f"gru-edge {m.recipe}")
        assert (row.size_bytes, row.weight_bytes) == (m.size_bytes, m.weight_bytes)
        info = tflite_model.read(m.path)
        assert (info.size_bytes, info.weight_bytes) == (m.size_bytes, m.weight_bytes)
