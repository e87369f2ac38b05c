"""The repository documents itself: the committed OpenAPI document is current, and no file
points outside the repository."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "manage.py spectacular --file docs/openapi.yaml"


def test_the_committed_openapi_document_is_what_the_code_generates(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--file", str(tmp_path / "openapi.yaml"), "--fail-on-warn"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "openapi.yaml").read_text() == (ROOT / "docs/openapi.yaml").read_text(), (
        f"docs/openapi.yaml is out of date: run `.venv/bin/python {REGENERATE}`"
    )


def _tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    files = [ROOT / n for n in names if (ROOT / n).is_file()]
    return [f for f in files if f.suffix not in (".png", ".ico", ".woff2", ".gz")]


def test_no_file_points_outside_the_repository():
    outside = re.compile(r"\.\./shared|CONTRACT\.md|DESIGN\.md|projects-guide")
    offenders = []
    for path in _tracked_text_files():
        if path == Path(__file__):
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1) if outside.search(line)]

    assert offenders == []


def test_every_relative_link_in_the_documentation_resolves_inside_the_repository():
    broken = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or ROOT not in resolved.parents:
                broken.append(f"{path.relative_to(ROOT)} → {target}")

    assert broken == []
