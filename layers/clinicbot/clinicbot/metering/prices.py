"""The public on-demand prices the cost model uses: ``clinicbot/data/prices.json`` (USD, no free tiers).

Each price carries its source URL and whether it was read in a stored copy of a source ("verified") or
is the figure believed current ("unverified"); ``--prices`` (CLI, bench) takes another file of the same shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_REGION", "REQUIRED", "Price", "PriceBook"]

DEFAULT_REGION = "eu-central-1"
REQUIRED = (
    "lambda_requests",
    "lambda_arm64_gb_second",
    "ddb_write_request_units",
    "ddb_read_request_units",
    "ddb_storage_gb_month",
    "ddb_pitr_gb_month",
    "http_api_requests",
    "sqs_requests",
    "scheduler_invocations",
    "cloudwatch_custom_metric_month",
    "cloudwatch_alarm_month",
    "cloudwatch_logs_ingest_gb",
    "cloudwatch_logs_storage_gb_month",
    "kms_requests",
    "data_transfer_out_gb",
    "xray_traces_recorded",
)


@dataclass(frozen=True)
class Price:
    key: str
    usd: float
    per: float
    unit: str
    status: str
    source: str
    note: str = ""

    @property
    def unit_price(self) -> float:
        return self.usd / self.per

    def cost(self, quantity: float) -> float:
        return max(0.0, quantity) * self.unit_price

    def label(self) -> str:
        per = "" if self.per == 1 else f" per {self.per:,.0f}"
        return f"${self.usd:g}{per} {self.unit}"


@dataclass(frozen=True)
class PriceBook:
    region: str
    region_name: str
    taken_on: str
    prices: dict[str, Price]

    def __getitem__(self, key: str) -> Price:
        return self.prices[key]

    def cost(self, key: str, quantity: float) -> float:
        return self.prices[key].cost(quantity)

    @property
    def unverified(self) -> list[str]:
        return sorted(k for k, p in self.prices.items() if p.status != "verified")

    @classmethod
    def load(cls, region: str = DEFAULT_REGION, path: str | Path | None = None) -> PriceBook:
        if path is None:
            text = resources.files("clinicbot.data").joinpath("prices.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data: dict[str, Any] = json.loads(text)
        regions = data.get("regions") or {}
        if region not in regions:
            raise KeyError(f"no prices for region {region!r}; known: {', '.join(sorted(regions))}")
        raw = regions[region]
        prices = {
            key: Price(
                key=key,
                usd=float(p["usd"]),
                per=float(p.get("per", 1)),
                unit=str(p.get("unit", "")),
                status=str(p.get("status", "unverified")),
                source=str(p.get("source", "")),
                note=str(p.get("note", "")),
            )
            for key, p in (raw.get("prices") or {}).items()
        }
        missing = [k for k in REQUIRED if k not in prices]
        if missing:
            raise ValueError(f"prices for {region} lack {', '.join(missing)}")
        return cls(
            region=region,
            region_name=str(raw.get("name", region)),
            taken_on=str(data.get("taken_on", "")),
            prices=prices,
        )
