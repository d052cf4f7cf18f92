"""Exact Decimal pricing of Bedrock usage from genai-prices, cached per model id.

Facts this relies on (DESIGN.md section 7):
- Bedrock's input token count excludes cache tokens; genai-prices' `Usage.input_tokens` includes them.
  We never hand Bedrock counts to genai-prices directly: we take its per-token rates once per model and
  multiply ourselves, which is exact and keeps the hot path to a dict lookup and four Decimal products.
- Model ids arrive as base ids, geo/global inference profile ids, foundation-model or inference-profile
  ARNs, or application inference profile ARNs (resolved through Bedrock's GetInferenceProfile).
- An unknown model is priced at the configured ceiling rate and marked, never $0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from guardrail.core.errors import PricingError
from guardrail.core.models import Price, UsageRecord

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient

    from guardrail.core.config import TokenRates

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens. A model without cache prices charges cache tokens at the input rate
    (that is how genai-prices and the Bedrock price list treat such models)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    source: str  # the id we priced, or "ceiling"
    at_ceiling: bool = False

    def cost(self, record: UsageRecord) -> Decimal:
        micro = (
            record.input_tokens * self.input
            + record.output_tokens * self.output
            + record.cache_read_tokens * self.cache_read
            + record.cache_write_tokens * self.cache_write
        )
        return micro / MILLION

    @classmethod
    def from_token_rates(cls, rates: TokenRates, source: str, at_ceiling: bool = False) -> Rates:
        return cls(
            input=rates.input,
            output=rates.output,
            cache_read=rates.input if rates.cache_read is None else rates.cache_read,
            cache_write=rates.input if rates.cache_write is None else rates.cache_write,
            source=source,
            at_ceiling=at_ceiling,
        )


def _plain(value: Any) -> Decimal | None:
    """genai-prices gives a Decimal, None, or a tiered price object (we only accept flat ones)."""
    if value is None or isinstance(value, Decimal):
        return value
    return None


def rates_from_genai_prices(model_ref: str) -> Rates | None:
    """Look the model up in genai-prices' offline AWS Bedrock table; None when it is unknown."""
    from genai_prices import Usage, calc_price  # heavy import, only on the first miss

    try:
        calc = calc_price(Usage(input_tokens=1, output_tokens=1), model_ref=model_ref, provider_id="aws")
    except LookupError:
        return None
    mp = calc.model_price
    inp, out = _plain(mp.input_mtok), _plain(mp.output_mtok)
    if inp is None or out is None:
        # Tiered or missing flat price: we will not guess; the caller falls back to the ceiling.
        return None
    cache_read = _plain(mp.cache_read_mtok)
    cache_write = _plain(mp.cache_write_mtok)
    return Rates(
        input=inp,
        output=out,
        cache_read=inp if cache_read is None else cache_read,
        cache_write=inp if cache_write is None else cache_write,
        source=calc.model.id,
    )


def base_model_ref(model_id: str) -> str | None:
    """Normalise any id form to what genai-prices knows; None for application inference profiles,
    which must be resolved through Bedrock (their ARN does not name the model)."""
    if not model_id.startswith("arn:"):
        return model_id
    # arn:aws:bedrock:region:account:<resource-type>/<id>
    resource = model_id.split(":", 5)[-1]
    kind, _, ident = resource.partition("/")
    if kind in ("foundation-model", "inference-profile") and ident:
        return ident
    return None


class Pricer:
    """Prices usage records. Thread-safe; per-model rates are computed once and kept.

    `bedrock` is a control-plane client (`boto3.client("bedrock")`) used only to resolve application
    inference profile ARNs; it is created lazily by `bedrock_factory` when first needed.
    """

    def __init__(
        self,
        *,
        overrides: Mapping[str, TokenRates] | None = None,
        ceiling: TokenRates,
        bedrock_factory: Callable[[], BedrockClient] | None = None,
        profile_ttl_seconds: float = 3600.0,
    ) -> None:
        self._overrides = {k: Rates.from_token_rates(v, source=k) for k, v in (overrides or {}).items()}
        self._ceiling = Rates.from_token_rates(ceiling, source="ceiling", at_ceiling=True)
        self._bedrock_factory = bedrock_factory
        self._bedrock: BedrockClient | None = None
        self._rates: dict[str, Rates] = {}
        self._profiles: TTLCache[str, str | None] = TTLCache(maxsize=1024, ttl=profile_ttl_seconds)
        self._lock = threading.Lock()

    def price(self, record: UsageRecord) -> Price:
        rates = self._rates.get(record.model_id)
        if rates is None:
            rates = self.rates_for(record.model_id)
        return Price(cost=rates.cost(record), priced_model=rates.source, at_ceiling=rates.at_ceiling)

    def rates_for(self, model_id: str) -> Rates:
        rates = self._rates.get(model_id)
        if rates is not None:
            return rates
        with self._lock:
            rates = self._rates.get(model_id) or self._resolve(model_id)
            # Application profiles may be re-pointed: those stay in the TTL cache, not here.
            if base_model_ref(model_id) is not None:
                self._rates[model_id] = rates
            return rates

    def _resolve(self, model_id: str) -> Rates:
        if model_id in self._overrides:
            return self._overrides[model_id]
        ref = base_model_ref(model_id)
        if ref is None:
            try:
                ref = self._resolve_application_profile(model_id)
            except Exception:  # AccessDenied, throttling, no client: price high, never $0
                ref = None
            if ref is None:
                return self._ceiling
        if ref in self._overrides:
            return self._overrides[ref]
        return rates_from_genai_prices(ref) or self._ceiling

    def _resolve_application_profile(self, arn: str) -> str | None:
        if arn in self._profiles:
            return self._profiles[arn]
        if self._bedrock_factory is None:
            raise PricingError(
                f"{arn} is an application inference profile; pricing it needs a Bedrock client "
                "(GetInferenceProfile) and none was configured"
            )
        if self._bedrock is None:
            self._bedrock = self._bedrock_factory()
        profile = self._bedrock.get_inference_profile(inferenceProfileIdentifier=arn)
        models = [m["modelArn"] for m in profile.get("models", []) if "modelArn" in m]
        # Every region of a profile serves the same model; its foundation-model ARN names it. Pricing
        # the base id gives the regional rate, the higher (safe) side for geo profiles.
        ref = base_model_ref(models[0]) if models else None
        self._profiles[arn] = ref
        return ref
