"""Running the `guardrail` CLI in-process and capturing what it prints."""

from __future__ import annotations

import io

from guardrail.tools.cli import main


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()
