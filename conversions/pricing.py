"""What tokens cost, as the invoice counts them: cached input, realtime and Batch API.

One price list per job: the job's endpoint's row for its model (EndpointModel), each
blank price filled from the model's ModelPrice row (longest priced prefix, for dated
snapshots). All prices are USD per million tokens.

    prices = prices_for(endpoint=job.endpoint, model=job.model)   # Prices | None
    cost(prices, tokens_in=1200, tokens_cached=1024, tokens_out=40)            # realtime
    cost(prices, tokens_in=1200, tokens_cached=1024, tokens_out=40, batch=True)  # Batch API

Rules (OpenAI's pricing pages, "Prompt caching" and "Batch API"):
- cached tokens (usage.prompt_tokens_details.cached_tokens) are part of prompt_tokens and
  are billed at the cached-input price instead of the input price; no cached price
  anywhere means no discount;
- Batch API: input and output at the batch prices (EndpointModel.batch_*; else the
  realtime price times ModelPrice.batch_discount, OpenAI's 0.5 when the model has no
  ModelPrice row); cached input at the cached price times the same factor as input;
- no price at all (a local server nobody bills for): every cost is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from conversions.endpoints import model_settings
from conversions.models import Endpoint, EndpointModel, ModelPrice

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.000001")  # Item.cost_usd's six decimal places
BATCH_FACTOR = Decimal("0.5")  # OpenAI's Batch API discount, when nothing else says


@dataclass(frozen=True)
class Cost:
    usd: Decimal  # what the invoice says
    saved_usd: Decimal  # what the cached tokens saved against the full input price

    def quantized(self) -> Cost:
        """Rounded to Item.cost_usd's six decimal places (a micro-dollar)."""
        return Cost(self.usd.quantize(COST_PLACES), self.saved_usd.quantize(COST_PLACES))


ZERO = Cost(Decimal(0), Decimal(0))


@dataclass(frozen=True)
class Prices:
    """One model's prices, USD per 1M tokens, every field resolved (no blanks)."""

    model: str
    input: Decimal
    cached_input: Decimal
    output: Decimal
    batch_input: Decimal
    batch_cached_input: Decimal
    batch_output: Decimal


def _first(*values: Decimal | None) -> Decimal | None:
    return next((v for v in values if v is not None), None)


def _or(value: Decimal | None, default: Decimal) -> Decimal:
    return default if value is None else value


def prices_for(*, endpoint: Endpoint | None, model: str) -> Prices | None:
    """The prices a job on this endpoint and model pays; None when nothing prices it.

    Each price comes from the endpoint's model row when set there, else from ModelPrice.
    """
    if not model:
        return None
    own: EndpointModel | None = (
        model_settings(endpoint=endpoint, model=model) if endpoint is not None else None
    )
    table = ModelPrice.objects.for_model(model)
    if own is None and table is None:
        return None

    def pick(name: str) -> Decimal | None:
        return _first(getattr(own, name, None), getattr(table, name, None))

    input_ = pick("input_per_mtok")
    output = pick("output_per_mtok")
    if input_ is None and output is None:
        return None
    input_ = input_ or Decimal(0)
    output = output or Decimal(0)
    cached = _or(pick("cached_input_per_mtok"), input_)
    factor = table.batch_discount if table is not None else BATCH_FACTOR
    batch_input = _or(getattr(own, "batch_input_per_mtok", None), input_ * factor)
    batch_output = _or(getattr(own, "batch_output_per_mtok", None), output * factor)
    batch_factor = batch_input / input_ if input_ else factor
    return Prices(
        model=model,
        input=input_,
        cached_input=cached,
        output=output,
        batch_input=batch_input,
        batch_cached_input=cached * batch_factor,
        batch_output=batch_output,
    )


def cost(
    prices: Prices | None,
    *,
    tokens_in: int,
    tokens_out: int,
    tokens_cached: int = 0,
    batch: bool = False,
) -> Cost:
    """USD for one call's (or one item's) tokens, and what the cached ones saved.

    tokens_in is usage.prompt_tokens (cached ones included), tokens_cached is capped at
    tokens_in; batch=True prices at the Batch API prices. Not quantised (Cost.quantized).
    None prices: Cost(0, 0).
    """
    if prices is None:
        return ZERO
    cached = min(max(tokens_cached, 0), max(tokens_in, 0))
    if batch:
        input_, cached_price, output = (
            prices.batch_input,
            prices.batch_cached_input,
            prices.batch_output,
        )
    else:
        input_, cached_price, output = prices.input, prices.cached_input, prices.output
    usd = (input_ * (tokens_in - cached) + cached_price * cached + output * tokens_out) / MILLION
    return Cost(usd=usd, saved_usd=(input_ - cached_price) * cached / MILLION)


def batch_cost(
    prices: Prices | None, *, tokens_in: int, tokens_out: int, tokens_cached: int = 0
) -> Cost:
    """cost(..., batch=True): what a Batch API request's tokens cost."""
    return cost(
        prices, tokens_in=tokens_in, tokens_out=tokens_out, tokens_cached=tokens_cached, batch=True
    )


def tokens_cost(
    *, prices: EndpointModel, tokens_in: int, tokens_cached: int, tokens_out: int
) -> Cost:
    """Realtime USD at one EndpointModel row's own prices alone (no ModelPrice fallback):
    a blank cached-input price means no discount, a blank input or output price counts 0."""
    input_ = prices.input_per_mtok or Decimal(0)
    resolved = Prices(
        model=prices.model,
        input=input_,
        cached_input=_or(prices.cached_input_per_mtok, input_),
        output=prices.output_per_mtok or Decimal(0),
        batch_input=Decimal(0),
        batch_cached_input=Decimal(0),
        batch_output=Decimal(0),
    )
    return cost(resolved, tokens_in=tokens_in, tokens_cached=tokens_cached, tokens_out=tokens_out)
