"""Lambda code without Docker: the repo's packages as the function asset, dependencies as one layer.

- Function asset: the Lambda side only, copied as it is and hashed by content: `handlers/` and
  `guardrail/` with its `core`, `store` and `service` layers. The app-side client (`guardrail/client`)
  and the on-call tools (`guardrail/tools`) never run in Lambda and are left out.
- Bytecode: both assets carry `.pyc` files compiled by the runtime's Python when this machine has one
  (`python3.14`), since Lambda cannot cache what it compiles at a cold start; otherwise they ship source
  only and the synth says so (`asset_files.py`).
- Layer asset: the runtime dependencies from `pyproject.toml` (`[project].dependencies`, which the light
  client needs, plus the `service` extra, minus boto3, which the Lambda runtime provides), installed by
  pip for the Lambda platform (arm64, CPython of the function runtime, binary wheels only). A botocore
  (or boto3) that a dependency pulls in (aws-xray-sdk does) is removed unless pip installed a matching
  boto3/botocore pair: one of them alone would shadow the runtime's half of the pair. Every compiled
  extension is checked against the runtime's CPython and architecture. The result is cached under
  `~/.cache/bedrock-guardrail-cdk/` (or `$GUARDRAIL_CDK_CACHE`) by a hash of the requirement list,
  platform and Python version, so only the first synth on a machine downloads anything. Each synth prints
  both assets' sizes.
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

from guardrail_cdk.asset_files import (
    LAYER_ROOT,
    PYTHON_VERSION,
    REPO_ROOT,
    compile_bytecode,
    runtime_python,
    source_hash,
    write_function_code,
)

RUNTIME = lambda_.Runtime.PYTHON_3_14  # asset_files.PYTHON_VERSION names the same version
ARCHITECTURE = lambda_.Architecture.ARM_64
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_28_aarch64")
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore"})
SERVICE_EXTRA = "service"
# boto3's own dependency that only makes sense beside it.
_WITH_BOTO3 = ("s3transfer",)
ELF_MACHINE = {"arm64": 183, "x86_64": 62}  # EM_AARCH64, EM_X86_64
_ARCH_TAG = {"arm64": "aarch64", "x86_64": "x86_64"}
# Bumped when what the layer holds changes for the same requirements (2: runtime-provided SDK pruned).
LAYER_LAYOUT = 2
UNZIPPED_LIMIT_MB = 250  # Lambda: function code and all its layers, unzipped
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


def _installed(target: Path) -> dict[str, tuple[str, list[Path]]]:
    """Distribution name -> (version, its dist-info and top-level paths) in a pip `--target` directory."""
    out: dict[str, tuple[str, list[Path]]] = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        tops = (info / "top_level.txt").read_text().split() if (info / "top_level.txt").is_file() else [name]
        paths = [info] + [p for top in tops for p in (target / top, target / f"{top}.py") if p.exists()]
        out[_dist_name(name)] = (version, paths)
    return out


def prune_runtime_provided(target: Path) -> list[str]:
    """Remove boto3/botocore (and s3transfer) from the layer unless they form a matching pair (same
    major.minor, as boto3 pins botocore); returns what was removed, for the synth output."""
    installed = _installed(target)
    boto3, botocore = installed.get("boto3"), installed.get("botocore")
    if boto3 and botocore and boto3[0].split(".")[:2] == botocore[0].split(".")[:2]:
        return []
    removed = []
    for name in (*sorted(PROVIDED_BY_RUNTIME), *_WITH_BOTO3):
        if name in installed:
            version, paths = installed[name]
            for path in paths:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(f"{name} {version}")
    return removed


def extension_problems(target: Path, *, python_version: str = PYTHON_VERSION, architecture: str = "arm64") -> list[str]:
    """Compiled files that would not load on the declared runtime and architecture: a CPython tag of
    another version, or an ELF binary for another machine (abi3 and plain `.so` files are checked by
    their ELF header alone)."""
    tag = "cpython-" + python_version.replace(".", "")
    problems = []
    for path in sorted(target.rglob("*.so*")):
        if not path.is_file():
            continue
        rel = path.relative_to(target).as_posix()
        found = re.search(r"\.(cpython-\d+)-([a-z0-9_]+)-linux-gnu\.so$", path.name)
        if found and (found.group(1) != tag or found.group(2) != _ARCH_TAG[architecture]):
            problems.append(f"{rel}: built for {found.group(1)} {found.group(2)}, not {tag} {_ARCH_TAG[architecture]}")
            continue
        header = path.read_bytes()[:20]
        if header[:4] != b"\x7fELF":
            problems.append(f"{rel}: not an ELF shared object")
        elif int.from_bytes(header[18:20], "little") != ELF_MACHINE[architecture]:
            problems.append(f"{rel}: ELF machine {int.from_bytes(header[18:20], 'little')}, not {architecture}")
    return problems


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def layer_hash(requirements: list[str], install: bool, *, bytecode: bool = False) -> str:
    key = {"requirements": requirements, "platforms": PLATFORMS, "python": PYTHON_VERSION, "install": install}
    key["layout"] = LAYER_LAYOUT
    if bytecode:  # the same install with its pycs is another asset
        key["bytecode"] = True
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def cache_root() -> Path:
    return Path(os.environ.get("GUARDRAIL_CDK_CACHE") or Path.home() / ".cache" / "bedrock-guardrail-cdk")


@jsii.implements(ILocalBundling)
class SourceBundling:
    """Copy the guardrail's packages into the asset directory."""

    def __init__(self, root: Path = REPO_ROOT, *, python: str | None = None) -> None:
        self.root = root
        self.python = python  # the runtime's Python, to compile with (None: source only)

    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        compiled = write_function_code(Path(output_dir), self.root, python=self.python)
        print(
            f"guardrail function code asset: {directory_mb(Path(output_dir)):.2f} MB unzipped, "
            + _bytecode_note(compiled),
            file=sys.stderr,
        )
        return True


def _bytecode_note(compiled: bool) -> str:
    if compiled:
        return f"with bytecode for Python {PYTHON_VERSION}"
    return f"source only: no python{PYTHON_VERSION} here to compile with, so it compiles at every cold start"


@jsii.implements(ILocalBundling)
class DependencyLayerBundling:
    """pip-install the runtime dependencies for Lambda arm64 into `python/` (the layer layout)."""

    def __init__(
        self, requirements: list[str], *, install: bool, run: Any = subprocess.run, python: str | None = None
    ) -> None:
        self.requirements = requirements
        self.install = install
        self.run = run
        self.python = python  # the runtime's Python, to compile with (None: source only)

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
        print(
            f"guardrail dependency layer asset: {directory_mb(target):.1f} MB unzipped "
            f"(Lambda allows {UNZIPPED_LIMIT_MB} MB for code and layers), {_bytecode_note(self.python is not None)}",
            file=sys.stderr,
        )
        return True

    def cached_install(self) -> Path:
        cached = cache_root() / f"layer-{layer_hash(self.requirements, True, bytecode=self.python is not None)[:32]}"
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
            removed = prune_runtime_provided(staging)
            if removed:
                print(f"dependency layer: left out {', '.join(removed)} (the runtime's boto3 is used)", file=sys.stderr)
            problems = extension_problems(staging)
            if problems:
                raise RuntimeError(
                    f"the dependency layer has compiled files that would not load on Python {PYTHON_VERSION} "
                    "arm64:\n  " + "\n  ".join(problems)
                )
            compile_bytecode(staging, self.python, runs_from=f"{LAYER_ROOT}/python", run=self.run)
            staging.rename(cached)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return cached


def source_code() -> lambda_.Code:
    python = runtime_python()
    return lambda_.Code.from_asset(
        str(REPO_ROOT),
        asset_hash=source_hash(bytecode=python is not None),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_UNUSED_IMAGE, local=SourceBundling(python=python)),
    )


def dependency_code(*, install: bool) -> lambda_.Code:
    requirements = runtime_requirements()
    python = runtime_python() if install else None
    layer = DependencyLayerBundling(requirements, install=install, python=python)
    return lambda_.Code.from_asset(
        str(Path(__file__).parent / "runtime"),
        asset_hash=layer_hash(requirements, install, bytecode=python is not None),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(image=_UNUSED_IMAGE, local=layer),
    )
