"""The MIS contract suite runs once per adapter listed in ``ADAPTERS``.

To add an adapter, write a factory — a context manager that starts what the adapter needs (a local
FHIR server, say), yields a ready adapter and cleans up — and add it to ``ADAPTERS``:

    from clinicbot.adapters.mis_fhir import FhirMis
    def _fhir() -> ContextManager[MisPort]: return fhir_test_server(FhirMis)   # your factory
    ADAPTERS["fhir"] = _fhir

Each test builds a fresh adapter and drives it inside one ``asyncio.run`` (see ``run`` in the test module),
so an adapter should open loop-bound resources (HTTP sessions) lazily, inside the running loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.mis import MisPort

AdapterFactory = Callable[[], AbstractContextManager[MisPort]]


def _demo() -> AbstractContextManager[MisPort]:
    return contextlib.nullcontext(DemoClinic())


def _fhir() -> AbstractContextManager[MisPort]:
    """The FHIR adapter against a real FHIR server on loopback, seeded with the demo clinic (tests/fhir)."""
    from tests.fhir.fixture import make_adapter, shared_server

    return contextlib.nullcontext(make_adapter(shared_server()))


ADAPTERS: dict[str, AdapterFactory] = {
    "demo": _demo,
    "fhir": _fhir,
}


@pytest.fixture(params=list(ADAPTERS))
def mis(request: pytest.FixtureRequest) -> Iterator[MisPort]:
    with ADAPTERS[request.param]() as adapter:
        assert isinstance(adapter, MisPort)
        yield adapter
