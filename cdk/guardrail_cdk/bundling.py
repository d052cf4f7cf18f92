"""Lambda code without Docker: the repo's packages as the function asset, dependencies as one layer.

- Function asset: the Lambda side only, copied as it is (no `__pycache__`) and hashed by content:
  `handlers/` and `guardrail/` with its `core`, `store` and `service` layers. The app-side client
  (`guardrail/client`) and the on-call tools (`guardrail/tools`) never run in Lambda and are left out.
- Layer asset: the runtime dependencies from `pyproject.toml` (`[project].dependencies`, which the light
  client needs, plus the `service` extra, minus boto3, which the Lambda runtime provides), installed by
  pip for the Lambda platform (arm64, CPython of the function runtime, binary wheels only). The result is
  cached under `~/.cache/bedrock-guardrail-cdk/` (or `$GUARDRAIL_CDK_CACHE`) by a hash of the requirement
  list, platform and Python version, so only the first synth on a machine downloads anything.
- With context `guardrail:bundleDependencies=false` (the infrastructure tests use it) the layer holds only
  a marker file: the template is the same, nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the functions import (docs/architecture.md): everything below these paths, nothing else.
SOURCE_PATHS = ("guardrail/__init__.py", "guardrail/core", "guardrail/store", "guardrail/service", "handlers")
RUNTIME = lambda_.Runtime.PYTHON_3_14
PYTHON_VERSION = "3.14"
ARCHITECTURE = lambda_.Architecture.ARM_64
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore"})
SERVICE_EXTRA = "service"
# Only used if local bundling declined, which it never does: it raises instead (no Docker here).
_UNUSED_IMAGE = DockerImage.from_registry("public.ecr.aws/sam/build-python3.14")


def runtime_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The package's own dependencies (what the client needs) plus its `service` extra (what Lambda needs)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = [*project["dependencies"], *project.get("optional-dependencies", {}).get(SERVICE_EXTRA, [])]
    own = _dist_name(project["name"])  # an extra that pulls in another extra of this package
    return sorted(d for d in deps if _dist_name(d) not in PROVIDED_BY_RUNTIME | {own})


def _dist_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    return re.sub(r"[-_.]+", "-", match.group(0)).lower() if match else requirement


def pip_command(target: Path, requirements: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check"]
    cmd += ["--target", str(target), "--implementation", "cp", "--python-version", PYTHON_VERSION]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd += ["--only-binary=:all:", *requirements]
    return cmd


def layer_hash(requirements: list[str], install: bool) -> str:
    key = {"requirements": requirements, "platforms": PLATFORMS, "python": PYTHON_VERSION, "install": install}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    files = []
    for source in SOURCE_PATHS:
        top = root / source
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
                files.append(path)
    return files


def source_hash(root: Path = REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("GUARDRAIL_CDK_CACHE") or Path.home() / ".cache" / "bedrock-guardrail-cdk")


@jsii.implements(ILocalBundling)
class SourceBundling:
    """Copy the guardrail's packages into the asset directory."""

    def __init__(self, root: Path = REPO_ROOT) -> None:
        self.root = root

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        for path in source_files(self.root):
            dest = Path(output_dir) / path.relative_to(self.root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        return True


@jsii.implements(ILocalBundling)
class DependencyLayerBundling:
    """pip-install the runtime dependencies for Lambda arm64 into `python/` (the layer layout)."""

    def __init__(self, requirements: list[str], *, install: bool, run: Any = subprocess.run) -> None:
        self.requirements = requirements
        self.install = install
        self.run = run

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        target = Path(output_dir) / "python"
        if not self.install:
            target.mkdir(parents=True, exist_ok=True)
            (target / "DEPENDENCIES_NOT_BUNDLED.txt").write_text(
                "Synthesized with guardrail:bundleDependencies=false; do not deploy this layer.\n"
                + "\n".join(self.requirements)
                + "\n"
            )
            return True
        cached = self.cached_install()
        shutil.copytree(cached, target, dirs_exist_ok=True)
        return True

    def cached_install(self) -> Path:
        cached = cache_root() / f"layer-{layer_hash(self.requirements, True)[:32]}"
        if cached.is_dir():
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="layer-", dir=cached.parent))
        try:
            result = self.run(pip_command(staging, self.requirements), capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(
                    "pip could not install the Lambda dependencies for arm64 / Python "
                    f"{PYTHON_VERSION} (binary wheels only):\n{result.stderr or result.stdout}"
                )
            staging.rename(cached)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cached


def source_code() -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        asset_hash=source_hash(),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_UNUSED_IMAGE, local=SourceBundling()),
    )


def dependency_code(*, install: bool) -> lambda_.Code:
    requirements = runtime_requirements()
    return lambda_.Code.from_asset(
        str(Path(__file__).parent / "runtime"),
        asset_hash=layer_hash(requirements, install),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_UNUSED_IMAGE, local=DependencyLayerBundling(requirements, install=install)),
    )
