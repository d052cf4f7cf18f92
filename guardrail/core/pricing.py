"""Exact Decimal pricing of Bedrock usage, cached per model id.

Facts this relies on (DESIGN.md section 7):
- Bedrock's input token count excludes cache tokens; genai-prices' `Usage.input_tokens` includes them.
  We never hand Bedrock counts to genai-prices directly: we take its per-token rates once per model and
  multiply ourselves, which is exact and keeps the hot path to a dict lookup and a few Decimal products.
- Tiered prices apply to the whole request once its input (cache reads and writes included) passes a
  threshold, as genai-prices and the Bedrock bill define them.
- Model ids arrive as base ids, geo/global inference profile ids, foundation-model or inference-profile
  ARNs, application inference profile ARNs (resolved through Bedrock's GetInferenceProfile) or
  provisioned-model ARNs (billed by the hour, so never per token).
- Where rates come from, in order: a price override, genai-prices, the supplemental table
  (`price_table.py`), else the configured ceiling rate, marked, never $0.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from cachetools import TTLCache

from guardrail.core import price_table
from guardrail.core.errors import PricingError
from guardrail.core.models import Price, UsageRecord
from guardrail.core.price_table import Billing, Row

if TYPE_CHECKING:
    from mypy_boto3_bedrock import BedrockClient

    from guardrail.core.config import TokenRates

MILLION = Decimal(1_000_000)
ZERO = Decimal(0)
FAILED_PROFILE_TTL = 60.0  # seconds an unresolvable application profile stays at the ceiling before a retry

Origin = Literal["genai-prices", "supplemental", "override", "ceiling", "not-token-priced"]


@dataclass(frozen=True, slots=True)
class TokenPrices:
    """USD per 1M tokens of each kind, at one tier."""

    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal  # 5-minute TTL
    cache_write_1h: Decimal

    def scaled(self, input_factor: Decimal, output_factor: Decimal | None = None) -> TokenPrices:
        out = input_factor if output_factor is None else output_factor
        return TokenPrices(
            self.input * input_factor,
            self.output * out,
            self.cache_read * input_factor,
            self.cache_write * input_factor,
            self.cache_write_1h * input_factor,
        )


ZERO_PRICES = TokenPrices(ZERO, ZERO, ZERO, ZERO, ZERO)


@dataclass(frozen=True, slots=True)
class Rates:
    """How one model id is priced. `tiers` are (start, prices): used when a request's input tokens,
    cache included, exceed `start` (the highest such tier wins)."""

    base: TokenPrices
    source: str  # the id we priced, or "ceiling"
    origin: Origin = "genai-prices"
    at_ceiling: bool = False
    tiers: tuple[tuple[int, TokenPrices], ...] = ()
    billing: Billing = "token"
    reference: str = ""  # the public page of a supplemental or derived price
    expires: float = 0.0  # time.monotonic() after which to resolve again; 0: never (only app profiles expire)

    @property
    def input(self) -> Decimal:
        return self.base.input

    @property
    def output(self) -> Decimal:
        return self.base.output

    def prices_for(self, total_input: int) -> TokenPrices:
        for start, prices in reversed(self.tiers):
            if total_input > start:
                return prices
        return self.base

    def cost(self, record: UsageRecord, *, tiered: bool = True) -> Decimal:
        """Reads only token counts (the guarded client passes its `Usage`, which has the same names).
        `tiered=False` for sums of many requests, which no single request's tier applies to."""
        p = self.base
        cache_write = record.cache_write_tokens
        if self.tiers and tiered:
            p = self.prices_for(record.input_tokens + record.cache_read_tokens + cache_write)
        one_hour = record.cache_write_1h_tokens
        micro = (
            record.input_tokens * p.input
            + record.output_tokens * p.output
            + record.cache_read_tokens * p.cache_read
            + (cache_write - one_hour) * p.cache_write
        )
        if one_hour:
            micro += one_hour * p.cache_write_1h
        return micro / MILLION

    def scaled(self, factor: Decimal) -> Rates:
        return replace(self, base=self.base.scaled(factor), tiers=tuple((s, p.scaled(factor)) for s, p in self.tiers))

    @classmethod
    def from_token_rates(cls, rates: TokenRates, source: str, origin: Origin = "override") -> Rates:
        cache_write = rates.input if rates.cache_write is None else rates.cache_write
        prices = TokenPrices(
            input=rates.input,
            output=rates.output,
            cache_read=rates.input if rates.cache_read is None else rates.cache_read,
            cache_write=cache_write,
            cache_write_1h=cache_write if rates.cache_write_1h is None else rates.cache_write_1h,
        )
        return cls(prices, source=source, origin=origin, at_ceiling=origin == "ceiling")

    @classmethod
    def not_token_priced(cls, source: str, billing: Billing, reference: str = "") -> Rates:
        return cls(ZERO_PRICES, source=source, origin="not-token-priced", billing=billing, reference=reference)


def _at(value: Any, total_input: int) -> Decimal | None:
    """genai-prices gives a Decimal, None, or a TieredPrices (base + tiers by total input tokens)."""
    if value is None or isinstance(value, Decimal):
        return value
    price: Decimal = value.base
    for tier in value.tiers:  # ascending by start
        if total_input > tier.start:
            price = tier.price
    return price


def _prices(mp: Any, model_ref: str, total_input: int) -> TokenPrices | None:
    inp = _at(mp.input_mtok, total_input)
    if inp is None:
        return None
    out = _at(mp.output_mtok, total_input)
    cache_read = _at(mp.cache_read_mtok, total_input)
    cache_write = _at(mp.cache_write_mtok, total_input)
    cache_write = inp if cache_write is None else cache_write
    one_hour = _at(getattr(mp, "cache_write_1h_mtok", None), total_input)
    if one_hour is None:
        one_hour = _claude_1h(model_ref, inp, cache_write)
    return TokenPrices(
        input=inp,
        output=ZERO if out is None else out,  # embeddings: an input price only
        cache_read=inp if cache_read is None else cache_read,
        cache_write=cache_write,
        cache_write_1h=one_hour,
    )


def _claude_1h(model_ref: str, inp: Decimal, cache_write: Decimal) -> Decimal:
    if "anthropic.claude" in model_ref:
        return inp * price_table.CLAUDE_1H_WRITE_FACTOR[0]
    return cache_write  # no published 1-hour rate: the 5-minute one


def rates_from_genai_prices(model_ref: str) -> Rates | None:
    """Look the model up in genai-prices' offline AWS Bedrock table; None when it has no price."""
    from guardrail.core import offline_prices  # genai-prices: a heavy import, only on the first miss

    try:
        calc = offline_prices.model_price(model_ref)
    except LookupError:
        return None
    mp = calc.model_price
    base = _prices(mp, model_ref, 0)
    if base is None:
        return None
    starts = sorted(
        {
            tier.start
            for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok")
            for tier in getattr(getattr(mp, name, None), "tiers", ())
        }
    )
    tiers = tuple((start, p) for start in starts if (p := _prices(mp, model_ref, start + 1)) is not None)
    rates = Rates(base, source=calc.model.id, tiers=tiers)
    return _with_long_context(rates, model_ref)


def _with_long_context(rates: Rates, model_ref: str) -> Rates:
    """Long-context premium genai-prices does not carry (Sonnet 4 / 4.5 past 200k input tokens)."""
    premium = price_table.long_context(model_ref)
    if premium is None or rates.tiers:
        return rates
    input_factor, output_factor, source = premium
    tier = (price_table.LONG_CONTEXT_START, rates.base.scaled(input_factor, output_factor))
    return replace(rates, tiers=(tier,), reference=source)


def rates_from_row(row: Row, source: str) -> Rates:
    if row.billing != "token":
        return Rates.not_token_priced(source, row.billing, row.source)
    inp = Decimal(row.input)
    cache_write = inp if row.cache_write is None else Decimal(row.cache_write)
    prices = TokenPrices(
        input=inp,
        output=Decimal(row.output),
        cache_read=inp if row.cache_read is None else Decimal(row.cache_read),
        cache_write=cache_write,
        cache_write_1h=_claude_1h(row.match, inp, cache_write),
    )
    return Rates(prices, source=source, origin="supplemental", reference=row.source)


def rates_from_supplemental(model_ref: str) -> Rates | None:
    row = price_table.find(price_table.SUPPLEMENTAL, model_ref)
    return None if row is None else rates_from_row(row, model_ref)


def resource_of(model_id: str) -> tuple[str, str]:
    """`arn:aws:bedrock:region:account:<kind>/<id>` -> (kind, id); a plain id -> ("", id)."""
    if not model_id.startswith("arn:"):
        return "", model_id
    kind, _, ident = model_id.split(":", 5)[-1].partition("/")
    return kind, ident


def base_model_ref(model_id: str) -> str | None:
    """Normalise any id form to what genai-prices knows; None for application inference profiles,
    which must be resolved through Bedrock (their ARN does not name the model)."""
    kind, ident = resource_of(model_id)
    if not kind:
        return model_id
    if kind in ("foundation-model", "inference-profile") and ident:
        return ident
    return None


class Pricer:
    """Prices usage records. Thread-safe; per-model rates are computed once and kept (application
    inference profiles for `profile_ttl_seconds`, as they may be re-pointed).

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overrides = {k: Rates.from_token_rates(v, source=k) for k, v in (overrides or {}).items()}
        self._ceiling = Rates.from_token_rates(ceiling, source="ceiling", origin="ceiling")
        self._bedrock_factory = bedrock_factory
        self._bedrock: BedrockClient | None = None
        self._rates: dict[str, Rates] = {}
        self._variants: dict[tuple[str, str, bool], Rates] = {}
        self._profiles: TTLCache[str, str | None] = TTLCache(maxsize=1024, ttl=profile_ttl_seconds, timer=clock)
        self._profile_ttl = profile_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()

    def price(self, record: UsageRecord) -> Price:
        rates = self._rates.get(record.model_id)
        if rates is None or (rates.expires and rates.expires < self._clock()):
            rates = self.rates_for(record.model_id)
        if record.service_tier or record.latency_optimized:
            rates = self.variant(rates, record.model_id, record.service_tier, record.latency_optimized)
        cost = rates.cost(record)
        # A request with no tokens (a failed or empty call) costs nothing, whatever the model: no ceiling flag.
        return Price(cost, rates.source, rates.at_ceiling and cost > 0, rates.billing)

    def rates_for(self, model_id: str) -> Rates:
        rates = self._rates.get(model_id)
        if rates is not None and not self._expired(rates):
            return rates
        with self._lock:
            rates = self._rates.get(model_id)
            if rates is None or self._expired(rates):  # not resolved meanwhile by another thread
                rates = self._resolve(model_id)
                self._rates[model_id] = rates
            return rates

    def _expired(self, rates: Rates) -> bool:
        return bool(rates.expires) and rates.expires < self._clock()

    def variant(self, rates: Rates, model_id: str, tier: str, latency_optimized: bool) -> Rates:
        """The rates of one service tier / latency mode of a model (cached like the rates themselves)."""
        key = (model_id, tier, latency_optimized)
        cached = self._variants.get(key)
        if cached is not None and cached.expires == rates.expires:
            return cached
        out = rates
        if rates.billing == "token" and not rates.at_ceiling and rates.origin != "override":
            if latency_optimized:
                row = price_table.find(price_table.LATENCY_OPTIMIZED, rates.source)
                if row is not None:
                    out = replace(rates_from_row(row, rates.source), expires=rates.expires)
            if tier in price_table.NOT_TOKEN_TIERS:
                out = Rates.not_token_priced(rates.source, price_table.NOT_TOKEN_TIERS[tier], price_table.SERVICE_TIERS)
            elif tier in price_table.TIER_MULTIPLIERS:
                factor, reference = price_table.TIER_MULTIPLIERS[tier]
                out = replace(out.scaled(factor), reference=reference)
        self._variants[key] = out
        return out

    def _resolve(self, model_id: str) -> Rates:
        if model_id in self._overrides:
            return self._overrides[model_id]
        if resource_of(model_id)[0] == "provisioned-model":
            return Rates.not_token_priced(model_id, "provisioned", price_table.AWS_PRICING)
        ref = base_model_ref(model_id)
        expires = 0.0
        if ref is None:
            try:
                ref = self._resolve_application_profile(model_id)
                expires = self._clock() + self._profile_ttl
            except Exception:  # AccessDenied, throttling, no client: price high, never $0; retry soon
                ref = None
            if ref is None:
                return replace(self._ceiling, expires=self._clock() + FAILED_PROFILE_TTL)
        rates = self.rates_for_ref(ref)
        return replace(rates, expires=expires) if expires else rates

    def rates_for_ref(self, ref: str) -> Rates:
        """Rates of a base or profile id: override, genai-prices, supplemental table, else the ceiling."""
        if ref in self._overrides:
            return self._overrides[ref]
        return rates_from_genai_prices(ref) or rates_from_supplemental(ref) or self._ceiling

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
