"""Lambda entry points: thin adapters from an event to engine calls. No business rules here.

In Lambda a cold start runs with the cyclic garbage collector paused: importing botocore, pydantic,
Powertools and the guardrail, then the first event's clients and price table, allocates about 100,000
objects that live as long as the process, and the collections that ran meanwhile walked them again and
again (about 50 ms of CPU, a tenth of the cold start). Every handler resumes it when its first event is
handled, failed or not (`default_runtime.settle`: `gc.freeze`, then `gc.enable`).
"""

import gc
import os

if os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_"):  # set by the Lambda runtime only
    gc.disable()
