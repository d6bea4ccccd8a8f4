import pytest

from gru_edge import recipes
from gru_edge.errors import RecipeError

SHIPPED = {"float32", "float16", "dynamic-int8", "int8", "int16x8", "android-gpu"}


def test_every_required_recipe_is_shipped_and_valid():
    assert SHIPPED <= set(recipes.shipped_names())
    for name in recipes.shipped_names():
        r = recipes.load(name)
        assert r.description and r.quantization in recipes.QUANTIZATIONS
        assert r.unroll and r.batch_size == 1  # every shipped recipe uses gru-edge's lowering
        assert r.source == f"shipped: converters/{name}.toml"  # sidecars name no install path of one machine


def test_android_gpu_carries_gpu_settings():
    r = recipes.load("android-gpu")
    assert r.gpu == recipes.GpuSettings("fp16", "cpu")
    assert recipes.load("float32").gpu is None


def test_int8_needs_calibration():
    assert recipes.load("int8").needs_calibration and recipes.load("int16x8").needs_calibration
    assert not recipes.load("dynamic-int8").needs_calibration


def test_unknown_recipe_lists_the_shipped_ones():
    with pytest.raises(RecipeError, match=r"Unknown recipe 'int4'. Shipped: android-gpu, dynamic-int8, float16"):
        recipes.load("int4")


def _write(tmp_path, text):
    p = tmp_path / "mine.toml"
    p.write_text(text)
    return str(p)


GOOD = """description = "mine"
[convert]
quantization = "float16"
[verify]
atol = 1e-3
rtol = 1e-3
min_psnr_db = 40
max_task_metric_delta = 0.01
"""


def test_own_recipe_file(tmp_path):
    r = recipes.load(_write(tmp_path, GOOD))
    assert r.name == "mine" and r.quantization == "float16" and r.verify.min_psnr_db == 40.0
    assert r.source == str(tmp_path / "mine.toml")
    assert recipes.Recipe.from_dict(r.to_dict()) == r


@pytest.mark.parametrize("text, message", [
    (GOOD.replace('quantization = "float16"', 'quantization = "int4"'),
     "unknown quantization 'int4'. Supported: float32, float16, dynamic-int8, int8, int16x8"),
    (GOOD.replace("[convert]", "[convert]\nsparsity = 0.5"),
     r"unknown key 'sparsity' in \[convert\]. Allowed: quantization, lowering, unroll, batch_size"),
    (GOOD.replace("[convert]", '[convert]\nunroll = "sometimes"'),
     r"unroll must be true \(every step in the graph\), false \(a WHILE loop over time\) or \"auto\" .*got 'sometimes'"),
    (GOOD.replace("[convert]", '[convert]\nlowering = "magic"'), "unknown lowering 'magic'. Supported: gru-edge, keras"),
    (GOOD + "colour = 'red'\n", r"unknown key 'colour' in \[verify\]"),
    ("flavour = 1\n" + GOOD, r"unknown key 'flavour'. Allowed: description, \[convert\], \[gpu\], \[verify\]"),
    (GOOD.replace("atol = 1e-3", 'atol = "small"'), "'atol' must be float, got str 'small'"),
    (GOOD.replace("[convert]", "[convert]\nunroll = 1"), r"unroll must be true .* got 1\."),
    (GOOD.replace("min_psnr_db = 40\n", ""), r"missing required key 'min_psnr_db' in \[verify\]"),
    (GOOD.replace('[convert]\nquantization = "float16"\n', ""), r"missing section \[convert\]"),
    (GOOD + '[gpu]\nprecision = "fp8"\n', "unknown gpu precision 'fp8'. Supported: fp16, fp32"),
    (GOOD.replace("[convert]", "[convert]\nbatch_size = 0"), "batch_size must be at least 1"),
    ("description = ", "is not valid TOML"),
    (GOOD.replace('quantization = "float16"', 'quantization = "int16x8"\nstreaming = true'),
     "streaming = true works with float32, float16, dynamic-int8 and int8"),
])
def test_bad_recipe_files_name_the_key(tmp_path, text, message):
    with pytest.raises(RecipeError, match=message):
        recipes.load(_write(tmp_path, text))


def test_missing_recipe_file():
    with pytest.raises(RecipeError, match="Recipe file not found: nowhere/x.toml"):
        recipes.load("nowhere/x.toml")


@pytest.mark.parametrize("convert", ["batch_size = 4\nunroll = true", 'unroll = "auto"', "unroll = false"])
def test_gpu_recipe_must_be_unrolled_batch_one(tmp_path, convert):
    """GPU delegates refuse WHILE: a [gpu] recipe says unroll = true, whatever the window (no "auto")."""
    text = GOOD.replace("[convert]", f"[convert]\n{convert}") + '[gpu]\nprecision = "fp32"\n'
    with pytest.raises(RecipeError, match=r"a \[gpu\] recipe needs unroll = true and batch_size = 1"):
        recipes.load(_write(tmp_path, text))


def test_a_gpu_recipe_without_unroll_stays_unrolled(tmp_path):
    """Recipes written before unroll = "auto" existed said nothing for a [gpu] recipe: it still parses, unrolled."""
    assert recipes.load(_write(tmp_path, GOOD + '[gpu]\nprecision = "fp32"\n')).unroll is True


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ('"auto"', "auto"), (None, "auto")])
def test_unroll_is_true_false_or_auto(tmp_path, value, expected):
    text = GOOD if value is None else GOOD.replace("[convert]", f"[convert]\nunroll = {value}")
    r = recipes.load(_write(tmp_path, text))
    assert r.unroll == expected and type(r.unroll) is type(expected)
    assert recipes.Recipe.from_dict(r.to_dict()) == r
