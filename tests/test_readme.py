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
