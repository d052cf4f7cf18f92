"""Imported once by the cross-process overshoot benchmark's fork server (benchmarks/overshoot_processes.py),
before it forks any child: what every child needs, loaded once and shared copy-on-write.

Besides the imports, one DynamoDB client is built so that botocore's loader cache (the endpoint rules,
partitions and the DynamoDB service model, parsed from JSON) is filled here instead of in each child; then
every object so far is moved out of the cyclic garbage collector's reach (`gc.freeze`), so the children's
collections do not write to (and so copy) the pages they share with the fork server.
"""

from __future__ import annotations

import gc

import boto3
import botocore.client  # noqa: F401 (loaded here, shared by the children)

import guardrail.client
import guardrail.service.client_sink  # noqa: F401

boto3.client("dynamodb", region_name="us-east-1")  # fills the default session's loader cache; no request
gc.collect()
gc.freeze()
