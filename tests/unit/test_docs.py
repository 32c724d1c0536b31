"""The README documents every setting that settings.py reads from the environment."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_environment_setting_is_in_the_readme():
    source = (ROOT / "chatproject" / "settings.py").read_text()
    readers = r"(?:env\.\w+|_typed|_positive_int|_positive_float)"
    names = set(re.findall(readers + r'\(\s*"([A-Z][A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text()
    assert len(names) > 20
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert missing == []


def test_the_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    [command] = re.findall(r"## Test it\n\n```sh\n(.+)\n```", readme)
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
