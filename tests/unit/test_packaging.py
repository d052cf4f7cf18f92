"""What each install brings (pyproject.toml): the app-side client light, the rest in extras and groups."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())


def names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in requirements}  # type: ignore[union-attr]


def test_pip_install_brings_what_guard_needs_and_nothing_of_the_service_cli_or_tools() -> None:
    assert names(PYPROJECT["project"]["dependencies"]) == {
        "boto3",
        "pydantic",
        "pydantic-settings",
        "genai-prices",
        "cachetools",
        "tzdata",  # calendar windows in any GUARDRAIL_TIMEZONE where the OS has no zone database
    }


def test_the_extras_stack_service_then_cli_then_demo_without_build_or_test_tools() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert names(extras["service"]) == {"aws-lambda-powertools", "slack-sdk"}  # slack-sdk: reset from Slack
    assert names(extras["cli"]) == {"bedrock-cost-guardrail", "shtab"}
    assert names(extras["demo"]) == {"bedrock-cost-guardrail", "moto"}
    heavy = {"aws-cdk-lib", "mypy", "cfn-lint", "pytest", "ruff"}
    assert not heavy & names([r for reqs in extras.values() for r in reqs])
    assert heavy <= names(PYPROJECT["dependency-groups"]["dev"])
