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

from botocore.exceptions import DataNotFoundError
from botocore.loaders import JSONFileLoader, Loader, instance_cache


class PlainJSONFileLoader(JSONFileLoader):
    """botocore's JSON file loader, parsing into plain dicts."""

    def _load_file(self, full_path: str, open_method: Any) -> Any:
        if not os.path.isfile(full_path):
            return None
        with open_method(full_path, "rb") as fp:
            return json.loads(fp.read().decode("utf-8"))


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


def create_loader(data_path: str | None = None) -> NamedServiceLoader:
    """As `botocore.loaders.create_loader`: `data_path` is botocore's `data_path` setting (`AWS_DATA_PATH`)."""
    extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else []
    return NamedServiceLoader(extra_search_paths=extra, file_loader=PlainJSONFileLoader())
