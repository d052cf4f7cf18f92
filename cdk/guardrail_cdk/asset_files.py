"""What the function asset holds, and its bytecode: plain files, no CDK (the cold-start benchmark builds the
same asset with it).

Lambda's code directories are read-only, so Python cannot cache what it compiles there: modules shipped
as source only are compiled again at every cold start (the guardrail's own: about 50 ms; genai-prices'
1.6 MB price table alone: about 280 ms). So both assets carry bytecode compiled by the runtime's own
Python when this machine has one (`python3.14`, or the interpreter running the synth if it is that
version): unchecked-hash `.pyc` files, valid whatever modification times the asset zip keeps. Bytecode is
tied to the interpreter version, so without that Python the assets ship source only and the synth says so.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# What the functions import (docs/architecture.md): everything below these paths, nothing else.
SOURCE_PATHS = ("guardrail/__init__.py", "guardrail/core", "guardrail/store", "guardrail/service", "handlers")
PYTHON_VERSION = "3.14"  # the functions' runtime (bundling.RUNTIME)
FUNCTION_ROOT = "/var/task"  # where Lambda puts the function code (tracebacks name these paths)
LAYER_ROOT = "/opt"


def runtime_python(version: str = PYTHON_VERSION) -> str | None:
    """An interpreter of the runtime's Python version on this machine, or None."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    return shutil.which(f"python{version}")


def compile_bytecode(
    target: Path, python: str | None, *, runs_from: str, run: Callable[..., Any] = subprocess.run
) -> bool:
    """Compile every module under `target` with `python` (unchecked-hash pycs, source paths as Lambda will
    see them under `runs_from`). False when there is no such interpreter: the target stays source only.
    A module that does not compile (a dependency's Python-2 example) is left as source."""
    if python is None:
        return False
    cmd = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    cmd += ["-s", str(target), "-p", runs_from, str(target)]
    result = run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and not any(target.rglob("*.pyc")):
        raise RuntimeError(f"{python} could not compile {target}:\n{result.stderr or result.stdout}")
    return True


def source_files(root: Path = REPO_ROOT) -> list[Path]:
    files = []
    for source in SOURCE_PATHS:
        top = root / source
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in {".pyc", ".pyo"}:
                files.append(path)
    return files


def source_hash(root: Path = REPO_ROOT, *, bytecode: bool = False) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    if bytecode:  # the same sources with their pycs are another asset
        digest.update(f"bytecode cpython-{PYTHON_VERSION}".encode())
    return digest.hexdigest()


def write_function_code(out: Path, root: Path = REPO_ROOT, *, python: str | None = None) -> bool:
    """The function asset into `out`: the Lambda-side sources, with bytecode if `python` is given.
    Returns whether it holds bytecode."""
    for path in source_files(root):
        dest = out / path.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    return compile_bytecode(out, python, runs_from=FUNCTION_ROOT)
