import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    test_command = _bash_blocks(readme)[1].strip()
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [test_command]
    assert "pytest" in test_command


def test_readme_quickstart_command_uses_the_console_script():
    assert "gru-edge quickstart" in _bash_blocks((ROOT / "README.md").read_text())[0]


def test_the_shipped_limits_are_the_documented_ones():
    """Every shipped recipe's parity limits are the README's: loosening one (say int8's atol) is a visible change
    of the documentation, not a silent edit of a TOML file."""
    from gru_edge import recipes

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("| recipe | what | limits"):].split("\n\n")[0]
    table = re.findall(r"^  \| `([\w-]+)` \|[^|]*\| ([^|]*) \|$", section, flags=re.M)
    documented = {}
    for name, cell in table:
        atol, rtol, psnr, delta = (v.strip() for v in cell.split("/"))
        documented[name] = recipes.Tolerances(float(atol), float(rtol), float(psnr.removesuffix(" dB")),
                                              round(float(delta.removesuffix("%")) / 100, 6))
    assert set(documented) == set(recipes.shipped_names())
    for name, limits in documented.items():
        assert recipes.load(name).verify == limits, name
