"""README's cost table is the bench's month: ``python -m bench.cost_month --write-readme --write-model`` writes
both from one run, and this checks that they still agree (a table edited by hand, or a model regenerated
without the README, fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clinicbot.metering.report import CostModel

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> dict[str, float]:
    """The bill's rows ("service / item" -> USD) and "total", from the first table of the cost section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- cost-table:start -->", 1)[1].split("<!-- cost-table:end -->", 1)[0]
    table = section.split("| service | item |", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, float] = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        service, item, usd = cells[0], cells[1].removesuffix(" (fixed)"), float(cells[4].strip("*"))
        rows["total" if service == "**total**" else f"{service} / {item}"] = usd
    return rows


def test_the_readme_table_is_the_month_of_the_shipped_cost_model() -> None:
    model = CostModel.load().data
    table = readme_table()
    assert table.pop("total") == pytest.approx(model["month_total_usd"], abs=1e-4)
    assert table == pytest.approx(model["month_lines_usd"], abs=1e-4)
    text = README.read_text(encoding="utf-8")
    assert f"Dominant line: **{model['month_dominant_line']}**" in text


def test_the_table_adds_up() -> None:
    table = readme_table()
    total = table.pop("total")
    assert total == pytest.approx(sum(table.values()), abs=1e-3)
