"""Model downgrade at throttle: rewrite a Bedrock model id to a cheaper family. Pure: no I/O.

A flag's `model_downgrades` maps a family substring to a cheaper family (`claude-sonnet` ->
`claude-haiku`). Replacing the substring alone does not give a real model id (Claude release dates differ
per model), so the target is picked from a table of known Bedrock model ids: the target family's model
of the same generation when there is one, otherwise its newest model. Whatever came before the model
name is kept: the inference profile prefix (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `global.`) and the ARN
prefix of a foundation-model or inference-profile ARN. Application inference profile ARNs do not name
their model and are never rewritten.

A downgrade value may also be a full model id (`anthropic.claude-haiku-4-5-20251001-v1:0`); it is used
as is, behind the caller's prefix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

# Geo and global cross-region inference profile prefixes.
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")

# Known current Bedrock base model ids (provider.model). Extend with `known_models=`.
KNOWN_MODELS: tuple[str, ...] = (
    "anthropic.claude-3-haiku-20240307-v1:0",
    "anthropic.claude-3-5-haiku-20241022-v1:0",
    "anthropic.claude-haiku-4-5-20251001-v1:0",
    "anthropic.claude-3-sonnet-20240229-v1:0",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "anthropic.claude-sonnet-4-20250514-v1:0",
    "anthropic.claude-sonnet-4-5-20250929-v1:0",
    "anthropic.claude-3-opus-20240229-v1:0",
    "anthropic.claude-opus-4-20250514-v1:0",
    "anthropic.claude-opus-4-1-20250805-v1:0",
    "anthropic.claude-opus-4-5-20251101-v1:0",
)

# claude-3-5-sonnet-20241022 (old naming) and claude-sonnet-4-5-20250929 / claude-sonnet-4-20250514 (new).
_OLD_NAMING = re.compile(r"claude-(\d+)(?:-(\d))?-([a-z]+)-(\d{8})")
_NEW_NAMING = re.compile(r"claude-([a-z]+)-(\d+)(?:-(\d))?-(\d{8})")
_MODEL_ID = re.compile(r"^(?P<prefix>(?:[a-z-]+\.)?)(?P<base>[a-z0-9-]+\.[A-Za-z0-9._:-]+)$")


@dataclass(frozen=True, slots=True)
class ModelName:
    """A Claude model id split into family (`claude-sonnet`), generation ((4, 5)) and release date."""

    base_id: str
    family: str
    generation: tuple[int, int]
    released: str


def parse_claude(base_id: str) -> ModelName | None:
    """`anthropic.claude-sonnet-4-5-20250929-v1:0` -> family claude-sonnet, generation (4, 5)."""
    name = base_id.partition(".")[2]
    new = _NEW_NAMING.match(name)
    if new:
        tier, major, minor, released = new.groups()
        return ModelName(base_id, f"claude-{tier}", (int(major), int(minor or 0)), released)
    old = _OLD_NAMING.match(name)
    if old:
        major, minor, tier, released = old.groups()
        return ModelName(base_id, f"claude-{tier}", (int(major), int(minor or 0)), released)
    return None


def split_model_id(model_id: str) -> tuple[str, str] | None:
    """(everything before the base id, base id), or None when the id does not name a model.

    `us.anthropic.claude-...` -> ("us.", "anthropic.claude-..."); an ARN keeps `arn:...:inference-profile/`
    (plus the profile prefix) as its prefix. Application inference profile ARNs -> None.
    """
    head = ""
    rest = model_id
    if model_id.startswith("arn:"):
        resource = model_id.split(":", 5)
        if len(resource) < 6:
            return None
        kind, sep, ident = resource[5].partition("/")
        if not sep or kind not in ("foundation-model", "inference-profile"):
            return None
        head = model_id[: len(model_id) - len(ident)]
        rest = ident
    for prefix in PROFILE_PREFIXES:
        if rest.startswith(prefix):
            return head + prefix, rest[len(prefix) :]
    if not _MODEL_ID.match(rest):
        return None
    return head, rest


def _in_family(family: str, base_id: str) -> bool:
    """`family` is a substring of the model name, or the model's parsed family (claude-3-7-sonnet is a
    claude-sonnet although the string `claude-sonnet` does not occur in it)."""
    if family in base_id.partition(".")[2]:
        return True
    parsed = parse_claude(base_id)
    return parsed is not None and parsed.family == family


def _pick_target(source: str, family_from: str, family_to: str, known: tuple[str, ...]) -> str:
    """The base id to call instead of `source` (a base id in `family_from`)."""
    if "." in family_to and ":" in family_to:
        return family_to  # a full model id
    candidates = [m for m in known if _in_family(family_to, m)]
    if not candidates:
        # Not in the table (e.g. amazon.nova-pro-v1:0 -> amazon.nova-lite-v1:0): plain substitution.
        return source.replace(family_from, family_to, 1)
    parsed_source = parse_claude(source)
    parsed = [p for p in (parse_claude(m) for m in candidates) if p is not None]
    if parsed_source is None or not parsed:
        return max(candidates)
    same = [p for p in parsed if p.generation == parsed_source.generation]
    return max(same or parsed, key=lambda p: (p.generation, p.released)).base_id


def downgrade_model_id(
    model_id: str, downgrades: Mapping[str, str], known_models: tuple[str, ...] = KNOWN_MODELS
) -> str | None:
    """The model id to call instead of `model_id` under `downgrades`, or None when none applies.

    >>> downgrade_model_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0", {"claude-sonnet": "claude-haiku"})
    'us.anthropic.claude-haiku-4-5-20251001-v1:0'
    """
    if not downgrades:
        return None
    parts = split_model_id(model_id)
    if parts is None:
        return None
    prefix, base = parts
    matching = [family for family in downgrades if family and _in_family(family, base)]
    if not matching:
        return None
    family_from = max(matching, key=len)  # the most specific rule wins (claude-3-5-sonnet over claude-sonnet)
    family_to = downgrades[family_from]
    if not family_to or family_to == base or _in_family(family_to, base):
        return None  # already in the cheaper family
    target = _pick_target(base, family_from, family_to, known_models)
    if target == base:
        return None
    return prefix + target
