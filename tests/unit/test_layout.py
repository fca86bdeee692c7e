"""The folders of worker/ are the stages of the flow (docs/architecture.md); these tests keep
them that way: imports point down the stages, the product does not import the sandbox, and
no module grows past what one reader holds in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "worker"

# Lower numbers are nearer the ground; a package may import its own modules and packages
# with a lower number only.
RANK = {
    "version": 0,
    "telemetry": 1,
    "polar": 2,
    "connections": 3,  # builds Redis and Polar clients (worker/connections.py)
    "decisions": 3,
    "store": 4,
    "intake": 5,
    "jobs": 6,
    "api": 7,
    "cli": 8,
    "sandbox": 9,
}
# The CLI's `sandbox` and `demo` commands start the local stand-in: the one door from the
# product into worker/sandbox/ (imported inside those commands only).
ALLOWED_UP = {("worker/cli/serve.py", "sandbox")}
MAX_LINES = 420


def package_of(path: Path) -> str:
    relative = path.relative_to(WORKER)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def worker_imports(path: Path) -> list[tuple[int, str]]:
    """(line, stage) of every ``worker.<stage>`` import, top-level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name.split(".")[1]) for name in names
                  if name.startswith("worker.")]
    return found


SOURCES = sorted(p for p in WORKER.rglob("*.py") if "migrations" not in p.parts)


def test_every_stage_has_a_rank() -> None:
    stages = {package_of(p) for p in SOURCES} - {"__init__"}
    assert stages <= set(RANK), f"give {sorted(stages - set(RANK))} a rank here"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_stages(path: Path) -> None:
    own = package_of(path)
    if own == "__init__":
        return
    shown = str(path.relative_to(ROOT))
    upward = [
        f"{shown}:{line} imports worker.{stage}"
        for line, stage in worker_imports(path)
        if stage != own and RANK[stage] >= RANK[own] and (shown, stage) not in ALLOWED_UP
    ]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it"


def test_the_layout_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The check itself: an import from a lower stage to a higher one is found."""
    module = tmp_path / "probe.py"
    module.write_text("def f() -> None:\n    from worker.jobs.tasks import app\n")
    assert worker_imports(module) == [(2, "jobs")]
