#!/usr/bin/env python3
"""CDK entry point: `cdk synth` / `cdk deploy` from this directory (see docs/deploy.md)."""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # guardrail_cdk, and the guardrail package it validates with

from guardrail_cdk.application import create_app  # noqa: E402

if __name__ == "__main__":
    # Under the CDK CLI, CDK_OUTDIR is set; `python app.py` alone synthesizes into ./cdk.out.
    app, _ = create_app(outdir=os.environ.get("CDK_OUTDIR") or str(HERE / "cdk.out"))
    app.synth()
