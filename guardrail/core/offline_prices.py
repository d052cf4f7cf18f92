"""genai-prices' bundled price snapshot, loaded without the package's price updater.

`import genai_prices` runs its package `__init__`, which imports the updater (`update_prices`: httpx and
asyncio, 30-60 ms of a Lambda cold start) although the guardrail only ever prices from the bundled,
offline snapshot. Here the package module is created without running its `__init__`; its submodules
(`types`, `data_snapshot`, `data`, ...) import as usual, and the first access to a name the `__init__`
defines (`calc_price`, `UpdatePrices`, ...) runs it then, so any other user of `genai_prices` in the
same process gets the whole package as before.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
import threading
from types import ModuleType
from typing import Any

PACKAGE = "genai_prices"
AWS = "aws"  # genai-prices' provider id for Amazon Bedrock
_lock = threading.RLock()


def _package_without_init() -> ModuleType:
    """The `genai_prices` package module, its `__init__` deferred to the first name it defines."""
    with _lock:
        if PACKAGE in sys.modules:
            return sys.modules[PACKAGE]
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(f"No module named {PACKAGE!r}", name=PACKAGE)
        module = importlib.util.module_from_spec(spec)
        loader = spec.loader
        submodules = {info.name for info in pkgutil.iter_modules(spec.submodule_search_locations)}
        ran = threading.Event()

        def __getattr__(name: str) -> Any:
            # A submodule is missing until imported: the import system asks for it before it imports it.
            if name in submodules or ran.is_set():
                raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
            with _lock:
                if not ran.is_set():
                    ran.set()
                    loader.exec_module(module)
            return getattr(module, name)

        module.__dict__["__getattr__"] = __getattr__
        sys.modules[PACKAGE] = module
        return module


def model_price(model_ref: str) -> Any:
    """genai-prices' price calculation for one token of input and output of `model_ref` at AWS Bedrock
    (its `model`, `model_price`); raises LookupError when the table has no such model."""
    _package_without_init()
    types = importlib.import_module(f"{PACKAGE}.types")
    snapshot = importlib.import_module(f"{PACKAGE}.data_snapshot").get_snapshot()
    usage = types.Usage(input_tokens=1, output_tokens=1)
    return snapshot.calc(usage, model_ref, provider_id=AWS, provider_api_url=None, genai_request_timestamp=None)
