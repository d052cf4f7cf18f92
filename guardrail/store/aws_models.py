"""botocore's data loader for the runtime's own clients in Lambda, without two costs of a client's creation.

A Lambda cold start creates the first client of the process: botocore reads that service's model, its
endpoint rules and the 1.2 MB `endpoints.json`. Two things it does on the way are pure cost there (about
half of the client's creation, 30-40 ms of a cold start):
- before the first model of each type it lists every service directory it knows (over 400, each listed
  again for its API versions) only to check that the name is one of them. Here the check is botocore's
  own, on the named service's directory: its latest API version that has the model (`list_api_versions`,
  which botocore runs next anyway); a name with none falls through to botocore's path and its
  `UnknownServiceError`.
- every JSON file is parsed into `OrderedDict`s (a Python call per object). Here into plain dicts, which
  keep the file's order too; botocore reads the models only by key and in order.

The files, search paths (`AWS_DATA_PATH`), versions, extras and botocore's cache are unchanged: the models
are equal to botocore's (tests/unit/test_aws_models.py).
"""

from __future__ import annotations

import json
import os
from typing import Any

from botocore import loaders
from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader, instance_cache

# What these build on beyond botocore's public names. The Lambda runtime brings its own botocore: one
# without them gets botocore's own loader (`create_loader`), never a broken cold start.
_LOADER_HELPERS = ("_find_extras", "_extras_processor", "determine_latest_version", "load_data")


class PlainJSONFileLoader(JSONFileLoader):
    """botocore's JSON file loader (the same files, extensions and order), parsing into plain dicts."""

    def load_file(self, file_path: str) -> Any:
        for ext, open_method in loaders._JSON_OPEN_METHODS.items():  # type: ignore[attr-defined]
            if os.path.isfile(file_path + ext):
                with open_method(file_path + ext, "rb") as fp:
                    return json.loads(fp.read().decode("utf-8"))
        return None


class NamedServiceLoader(Loader):
    """botocore's `Loader`, checking a service name in that service's directory only."""

    @instance_cache
    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        try:
            latest = self.determine_latest_version(service_name, type_name)
        except DataNotFoundError:  # not a service with this model: botocore's own path and error
            return super().load_service_model(service_name, type_name, api_version=api_version)
        api_version = api_version or latest
        model = self.load_data(os.path.join(service_name, api_version, type_name))
        own: Any = self  # botocore's extras helpers, as its own load_service_model uses them (not in its stubs)
        own._extras_processor.process(model, own._find_extras(service_name, type_name, api_version))
        return model


def create_loader(data_path: str | None = None) -> Loader:
    """As `botocore.loaders.create_loader`: `data_path` is botocore's `data_path` setting (`AWS_DATA_PATH`).
    botocore's own loader when this botocore lacks what `NamedServiceLoader` builds on."""
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else []
    loader = NamedServiceLoader(extra_search_paths=extra, file_loader=PlainJSONFileLoader())
    if not hasattr(loaders, "_JSON_OPEN_METHODS") or not all(hasattr(loader, n) for n in _LOADER_HELPERS):
        return loaders.create_loader(data_path)
    return loader
