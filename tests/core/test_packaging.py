"""requirements.txt (read by Streamlit Community Cloud and Hugging Face Spaces) pins exactly what
pyproject.toml's dependencies pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)", line)
        assert match, f"not an exact pin: {line!r}"
        out[match.group(1).lower().replace("_", "-")] = match.group(2)
    return out


def test_requirements_txt_pins_what_pyproject_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert _pins(requirements) == _pins(project)
    assert "timm" in _pins(project)
