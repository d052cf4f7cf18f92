"""Build the CDK app: context -> props -> stack, with cdk-nag AwsSolutions as a validation plugin."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from guardrail_cdk.props import GuardrailProps
from guardrail_cdk.stack import GuardrailStack

DEFAULT_STACK_NAME = "BedrockCostGuardrail"


def create_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, GuardrailStack]:
    app = App(context=dict(context or {}), outdir=outdir)
    props = GuardrailProps.from_context(app.node.try_get_context, app.node.get_all_context())
    stack_name = app.node.try_get_context("guardrail:stackName") or DEFAULT_STACK_NAME
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    stack = GuardrailStack(app, stack_name, props=props, env=env)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack
