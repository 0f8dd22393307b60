from __future__ import annotations

import asyncio

from clinicbot import bootstrap
from clinicbot.config import Settings


def test_the_demo_mis_is_built_on_first_use_only() -> None:
    mis = bootstrap.build_mis(Settings())  # type: ignore[call-arg]
    assert mis._target is None  # type: ignore[attr-defined]
    branches = asyncio.run(mis.branches())
    assert branches
    assert mis._target is not None  # type: ignore[attr-defined]
