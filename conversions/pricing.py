"""What tokens cost at an endpoint model's prices, cached input included; which prices
apply to a job's calls in realtime and in Batch API mode (realtime_rates, batch_rates).

Prices are USD per million tokens (EndpointModel, ModelPrice); the cached-input price
applies to usage.prompt_tokens_details.cached_tokens, which are part of the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from conversions.endpoints import model_settings
from conversions.models import Endpoint, EndpointModel, ModelPrice

MILLION = Decimal(1_000_000)
# The Batch API's price as a share of the realtime price where no row says otherwise.
DEFAULT_BATCH_FACTOR = Decimal("0.5")


@dataclass(frozen=True)
class Cost:
    usd: Decimal  # what the invoice says
    saved_usd: Decimal  # what the cached tokens saved against the full input price


def tokens_cost(
    *, prices: EndpointModel, tokens_in: int, tokens_cached: int, tokens_out: int
) -> Cost:
    """USD for one call's (or one item's) tokens; not quantised.

    tokens_cached is capped at tokens_in. A blank cached-input price means no discount;
    a blank input or output price counts as 0 (an unpriced local server).
    """
    cached = min(max(tokens_cached, 0), tokens_in)
    input_price = prices.input_per_mtok or Decimal(0)
    cached_price = (
        prices.cached_input_per_mtok if prices.cached_input_per_mtok is not None else input_price
    )
    output_price = prices.output_per_mtok or Decimal(0)
    usd = (
        input_price * (tokens_in - cached) + cached_price * cached + output_price * tokens_out
    ) / MILLION
    return Cost(usd=usd, saved_usd=(input_price - cached_price) * cached / MILLION)


@dataclass(frozen=True)
class Rates:
    """USD per million tokens in and out; what results.call_cost prices a call with."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        """USD for these tokens (not quantised), as ModelPrice.cost."""
        return (self.input_per_mtok * tokens_in + self.output_per_mtok * tokens_out) / MILLION


def realtime_rates(*, endpoint: Endpoint | None, model: str) -> Rates | None:
    """A model's realtime prices: the endpoint model's when it has both, else the model
    price table's (ModelPrice, what realtime jobs cost items at); None: unpriced."""
    row = model_settings(endpoint=endpoint, model=model) if endpoint else None
    if row is not None and row.input_per_mtok is not None and row.output_per_mtok is not None:
        return Rates(row.input_per_mtok, row.output_per_mtok)
    price = ModelPrice.objects.for_model(model)
    if price is None:
        return None
    return Rates(price.input_per_mtok, price.output_per_mtok)


def batch_rates(*, endpoint: Endpoint | None, model: str) -> Rates | None:
    """A model's Batch API prices: the endpoint model's batch prices when it has both,
    else its realtime prices (realtime_rates) times ModelPrice.batch_discount (0.5, the
    Batch API's half price, when the model has no price row); None: unpriced."""
    row = model_settings(endpoint=endpoint, model=model) if endpoint else None
    if (
        row is not None
        and row.batch_input_per_mtok is not None
        and row.batch_output_per_mtok is not None
    ):
        return Rates(row.batch_input_per_mtok, row.batch_output_per_mtok)
    realtime = realtime_rates(endpoint=endpoint, model=model)
    if realtime is None:
        return None
    price = ModelPrice.objects.for_model(model)
    factor = price.batch_discount if price is not None else DEFAULT_BATCH_FACTOR
    return Rates(realtime.input_per_mtok * factor, realtime.output_per_mtok * factor)
