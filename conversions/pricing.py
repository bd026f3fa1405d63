"""What tokens cost at an endpoint model's prices, cached input included.

Plain arithmetic over a price row; results.py will call it once items record cached
tokens (issue 15). Prices are USD per million tokens (EndpointModel); the cached-input
price applies to usage.prompt_tokens_details.cached_tokens, which are part of the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from conversions.models import EndpointModel

MILLION = Decimal(1_000_000)


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
