"""Bundling without Docker: pip for Lambda arm64 / CPython 3.14 wheels, cached once per machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from guardrail_cdk import bundling  # type: ignore[import-not-found, unused-ignore]


def test_runtime_requirements_come_from_pyproject_without_boto3() -> None:
    reqs = bundling.runtime_requirements()
    names = {bundling._dist_name(r) for r in reqs}
    assert {"pydantic", "pydantic-settings", "genai-prices", "cachetools", "aws-lambda-powertools"} <= names
    assert "boto3" not in names


def test_the_service_extra_is_bundled_and_the_client_install_stays_light(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "bedrock-cost-guardrail"\ndependencies = ["boto3>=1", "pydantic>=2"]\n'
        '[project.optional-dependencies]\nservice = ["aws-lambda-powertools>=3"]\n'
        'demo = ["bedrock-cost-guardrail[service]", "moto>=5"]\n'
    )
    assert bundling.runtime_requirements(pyproject) == ["aws-lambda-powertools>=3", "pydantic>=2"]


def test_pip_installs_binary_wheels_for_lambda_arm64_into_the_target() -> None:
    cmd = bundling.pip_command(Path("/out/python"), ["pydantic>=2.7"])
    joined = " ".join(cmd)
    assert "--only-binary=:all:" in cmd and "--target /out/python" in joined
    assert "--platform manylinux2014_aarch64" in joined and "--python-version 3.14" in joined
    assert "--implementation cp" in joined and cmd[-1] == "pydantic>=2.7"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GUARDRAIL_CDK_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_dependencies_are_installed_once_then_copied_from_the_cache(cache: Path) -> None:
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        target = Path(cmd[cmd.index("--target") + 1])
        (target / "pydantic").mkdir(parents=True)
        (target / "pydantic" / "__init__.py").write_text("")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    bundler = bundling.DependencyLayerBundling(["pydantic"], install=True, run=fake_pip)
    for n in (1, 2):
        out = cache / f"out{n}"
        assert bundler.try_bundle(str(out))
        assert (out / "python" / "pydantic" / "__init__.py").is_file()
    assert len(calls) == 1


def test_a_pip_failure_stops_the_synth_with_pips_message(cache: Path) -> None:
    def failing(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "No matching distribution found for pydantic-core")

    bundler = bundling.DependencyLayerBundling(["pydantic"], install=True, run=failing)
    with pytest.raises(RuntimeError, match="No matching distribution"):
        bundler.try_bundle(str(cache / "out"))
    assert not list((cache / "cache").glob("layer-*"))


def test_without_dependency_bundling_the_layer_holds_a_marker_and_nothing_is_run(cache: Path) -> None:
    bundler = bundling.DependencyLayerBundling(["pydantic"], install=False, run=None)
    assert bundler.try_bundle(str(cache / "out"))
    assert (cache / "out" / "python" / "DEPENDENCIES_NOT_BUNDLED.txt").is_file()


def test_source_asset_holds_the_lambda_side_only(tmp_path: Path) -> None:
    assert bundling.SourceBundling().try_bundle(str(tmp_path))
    assert {p.name for p in tmp_path.iterdir()} == {"guardrail", "handlers"}
    assert {p.name for p in (tmp_path / "guardrail").iterdir()} == {"__init__.py", "core", "service", "store"}
    assert (tmp_path / "guardrail" / "store" / "ledger.py").is_file()
    assert not list(tmp_path.rglob("tools")) and not list(tmp_path.rglob("client"))
    assert not list(tmp_path.rglob("__pycache__"))


def test_every_handler_imports_from_the_asset_alone(tmp_path: Path) -> None:
    # Given the function asset on its own (the app-side client and the tools are not in it)
    assert bundling.SourceBundling().try_bundle(str(tmp_path))
    probe = (
        "import importlib, sys\n"
        "for name in ('usage', 'alarm', 'reset', 'schedule'):\n"
        "    importlib.import_module('handlers.' + name)\n"
        "ours = [m for m in sys.modules.values() if m.__name__.split('.')[0] in ('guardrail', 'handlers')]\n"
        "outside = [m.__name__ for m in ours if not (getattr(m, '__file__', None) or '').startswith(sys.argv[1])]\n"
        "print(outside)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "POWERTOOLS_TRACE_DISABLED": "true"}
    # When each handler module is imported from it in a fresh interpreter
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    # Then every guardrail module it needs was found in the asset
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
