"""`python -m guardrail`: the on-call CLI. Only this entry point loads `guardrail.tools`; `import guardrail`
(what the guarded client and the Lambda functions do) never does."""

from guardrail.tools.cli import main

raise SystemExit(main())
