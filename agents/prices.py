"""What an LLM conversation cost: per-model token prices and the lookup of a model's price.

Each API backend ships the list prices of its provider's models (USD per million tokens); a user
adds or overrides entries, or prices every model at once with the ``*`` entry (``--price-in 0
--price-out 0`` for a local server). A model with no price costs 0 and the note says so: a
campaign never stops for an unknown price, but its ledger does not pretend to know one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.events import Usage

ANY_MODEL = "*"
# snapshot suffixes that do not change the price: -20250929 / @20250929 (Anthropic),
# -2024-08-06 (OpenAI), -latest
_SNAPSHOT = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2}|-latest)$")


@dataclass(frozen=True)
class Price:
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    @classmethod
    def flat(cls, input: float, output: float) -> Price:
        """One input price for fresh, cached and cache-written input alike (an upper bound where the
        provider discounts cache reads)."""
        return cls(input, output, input, input)

    def cost(self, usage: Usage) -> float:
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        ) / 1_000_000


class PriceTable:
    """Per-model prices. A model matches its own name, its name without a snapshot suffix
    (``claude-sonnet-4-5-20250929`` is priced as ``claude-sonnet-4-5``, ``gpt-4o-2024-08-06`` as
    ``gpt-4o``), an alias, or else the ``*`` entry; never a cousin (``gpt-4o`` is not ``gpt-4``)."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *, aliases: Mapping[str, str] | None = None):
        self.prices: dict[str, Price] = dict(prices or {})
        self.aliases: dict[str, str] = dict(aliases or {})

    def with_prices(self, more: Mapping[str, Price]) -> PriceTable:
        """A copy with ``more`` added (overriding entries of the same name)."""
        return PriceTable({**self.prices, **more}, aliases=self.aliases)

    def lookup(self, model: str) -> Price | None:
        for name in (model, _SNAPSHOT.sub("", model)):
            if name in self.prices:
                return self.prices[name]
            alias = self.aliases.get(name)
            if alias in self.prices:
                return self.prices[alias]
        return self.prices.get(ANY_MODEL)

    def cost(self, model: str, usage: Usage) -> tuple[float, str]:
        """(USD, note). An unknown model costs 0 and the note says so."""
        price = self.lookup(model)
        if price is None:
            return 0.0, (f"no price known for model {model!r}: cost recorded as 0 "
                         "(set one with --price-in/--price-out, USD per million tokens)")
        return price.cost(usage), ""
