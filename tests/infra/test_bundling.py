"""Bundling without Docker: pip for Lambda arm64 / CPython 3.14 wheels, cached once per machine."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from guardrail_cdk import asset_files, bundling  # type: ignore[import-not-found, unused-ignore]


def test_runtime_requirements_come_from_pyproject_without_boto3() -> None:
    reqs = bundling.runtime_requirements()
    names = {bundling._dist_name(r) for r in reqs}
    assert {
        "pydantic",
        "genai-prices",
        "cachetools",
        "aws-lambda-powertools",
        "slack-sdk",
    } <= names
    assert "tzdata" in names  # ZoneInfo needs it where the OS has no zoneinfo database
    assert "boto3" not in names and "botocore" not in names


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
        "for name in ('usage', 'alarm', 'reset', 'schedule', 'slack'):\n"
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


# -- what the layer may hold -----------------------------------------------------------------------


def dist(target: Path, name: str, version: str, top: str | None = None) -> None:
    """A fabricated pip --target install of one distribution."""
    info = target / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "top_level.txt").write_text((top or name) + "\n")
    (target / (top or name)).mkdir()
    (target / (top or name) / "__init__.py").write_text("")


def test_a_botocore_pulled_in_alone_is_left_out_of_the_layer(tmp_path: Path) -> None:
    # Given aws-xray-sdk's botocore 1.44 without boto3 (the runtime has its own boto3 1.40 + botocore 1.40)
    dist(tmp_path, "botocore", "1.44.2")
    dist(tmp_path, "aws_xray_sdk", "2.14.0")
    # When the layer is pruned, Then botocore is gone and the rest stays
    assert bundling.prune_runtime_provided(tmp_path) == ["botocore 1.44.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aws_xray_sdk", "aws_xray_sdk-2.14.0.dist-info"]


def test_a_mismatched_pair_is_left_out_and_a_matching_pair_kept(tmp_path: Path) -> None:
    dist(tmp_path / "bad", "boto3", "1.40.3")
    dist(tmp_path / "bad", "botocore", "1.44.2")
    dist(tmp_path / "bad", "s3transfer", "0.14.0")
    assert bundling.prune_runtime_provided(tmp_path / "bad") == ["boto3 1.40.3", "botocore 1.44.2", "s3transfer 0.14.0"]
    assert list((tmp_path / "bad").iterdir()) == []
    dist(tmp_path / "good", "boto3", "1.40.3")
    dist(tmp_path / "good", "botocore", "1.40.9")
    assert bundling.prune_runtime_provided(tmp_path / "good") == []
    assert (tmp_path / "good" / "botocore").is_dir()


def elf(path: Path, machine: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44))


def test_compiled_extensions_must_match_the_runtime_python_and_architecture(tmp_path: Path) -> None:
    # Given a layer with extensions for the right and the wrong targets
    elf(tmp_path / "pydantic_core" / "_pydantic_core.cpython-314-aarch64-linux-gnu.so", 183)
    elf(tmp_path / "pkg" / "_speedups.abi3.so", 183)
    elf(tmp_path / "pkg.libs" / "libz-1a2b.so.1.3", 183)
    elf(tmp_path / "old" / "_ext.cpython-312-aarch64-linux-gnu.so", 183)
    elf(tmp_path / "intel" / "_ext.cpython-314-x86_64-linux-gnu.so", 62)
    elf(tmp_path / "intel" / "_limited.abi3.so", 62)
    (tmp_path / "broken.so").write_text("not a binary")
    # When checked against Python 3.14 arm64, Then exactly the wrong ones are named, with why
    problems = bundling.extension_problems(tmp_path, python_version="3.14", architecture="arm64")
    assert problems == [
        "broken.so: not an ELF shared object",
        "intel/_ext.cpython-314-x86_64-linux-gnu.so: built for cpython-314 x86_64, not cpython-314 aarch64",
        "intel/_limited.abi3.so: ELF machine 62, not arm64",
        "old/_ext.cpython-312-aarch64-linux-gnu.so: built for cpython-312 aarch64, not cpython-314 aarch64",
    ]
    assert bundling.extension_problems(tmp_path / "pydantic_core") == []


def test_the_install_is_pruned_and_checked_before_it_is_cached(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pip(extension: str) -> Any:
        def run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
            target = Path(cmd[cmd.index("--target") + 1])
            dist(target, "botocore", "1.44.2")
            elf(target / "pydantic_core" / extension, 183 if "aarch64" in extension else 62)
            return subprocess.CompletedProcess(cmd, 0, "", "")

        return run

    wrong = bundling.DependencyLayerBundling(["pydantic"], install=True, run=pip("_p.cpython-314-x86_64-linux-gnu.so"))
    with pytest.raises(RuntimeError, match=r"would not load on Python 3\.14 arm64"):
        wrong.try_bundle(str(cache / "out"))
    assert not list((cache / "cache").glob("layer-*"))  # nothing cached
    right = bundling.DependencyLayerBundling(["pydantic"], install=True, run=pip("_p.cpython-314-aarch64-linux-gnu.so"))
    assert right.try_bundle(str(cache / "out"))
    assert not (cache / "out" / "python" / "botocore").exists()
    printed = capsys.readouterr().err
    assert "left out botocore 1.44.2" in printed and "dependency layer asset:" in printed and "MB unzipped" in printed


def test_synth_prints_the_function_code_asset_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bundling.SourceBundling().try_bundle(str(tmp_path))
    assert "guardrail function code asset:" in capsys.readouterr().err


# -- bytecode: Lambda cannot cache what it compiles at a cold start ---------------------------------------


def pyc_of(source: Path) -> Path:
    return source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"


def test_with_the_runtime_python_the_function_asset_carries_bytecode_valid_whatever_the_zip_keeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given this interpreter standing in for the runtime's Python
    assert bundling.SourceBundling(python=sys.executable).try_bundle(str(tmp_path))
    sources = sorted(tmp_path.rglob("*.py"))
    # Then every module has its bytecode, checked by nothing (no mtime or hash check at import)
    assert sources and all(pyc_of(s).is_file() for s in sources)
    header = pyc_of(tmp_path / "guardrail" / "core" / "models.py").read_bytes()[:16]
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, unchecked
    # and tracebacks name the module where Lambda runs it
    code = marshal.loads(pyc_of(tmp_path / "guardrail" / "core" / "models.py").read_bytes()[16:])
    assert code.co_filename == "/var/task/guardrail/core/models.py"
    assert "with bytecode for Python 3.14" in capsys.readouterr().err


def test_without_the_runtime_python_the_assets_ship_source_only_and_hash_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asset_files.shutil, "which", lambda name: None)
    assert asset_files.runtime_python("9.99") is None
    assert asset_files.runtime_python(f"{sys.version_info.major}.{sys.version_info.minor}") == sys.executable
    assert bundling.SourceBundling(python=None).try_bundle(str(tmp_path))
    assert not list(tmp_path.rglob("*.pyc"))
    assert "source only: no python3.14 here" in capsys.readouterr().err
    assert asset_files.source_hash(bytecode=True) != asset_files.source_hash()
    assert bundling.layer_hash(["pydantic"], True, bytecode=True) != bundling.layer_hash(["pydantic"], True)


def test_the_layer_is_compiled_before_it_is_cached(cache: Path) -> None:
    def fake_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        if "compileall" in cmd:
            return subprocess.run(cmd, **kwargs)
        target = Path(cmd[cmd.index("--target") + 1])
        (target / "pydantic").mkdir(parents=True)
        (target / "pydantic" / "__init__.py").write_text("VERSION = 2\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    bundler = bundling.DependencyLayerBundling(["pydantic"], install=True, run=fake_pip, python=sys.executable)
    assert bundler.try_bundle(str(cache / "out"))
    assert pyc_of(cache / "out" / "python" / "pydantic" / "__init__.py").is_file()


def test_the_runtime_python_is_the_functions_runtime() -> None:
    assert bundling.RUNTIME.name == f"python{asset_files.PYTHON_VERSION}"
