"""CDK app for the Bedrock cost guardrail (see docs/deploy.md)."""
