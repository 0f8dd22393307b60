"""Broadcast campaigns and segments (no I/O)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from clinicbot.engagement.broadcasts import UNSUBSCRIBE_CALLBACK, Campaign, Segment, unsubscribe_markup
from clinicbot.mis.models import Appointment, AppointmentStatus, PatientVisits


def visit(days: int, status: AppointmentStatus, branch: str = "b-1") -> Appointment:
    start = datetime(2026, 11, 23, 9, tzinfo=UTC) + timedelta(days=days)
    return Appointment(
        id=f"a{days}",
        patient_id="p",
        doctor_id="d",
        branch_id=branch,
        start=start,
        end=start + timedelta(minutes=30),
        status=status,
    )


class FakeMis:
    def __init__(self, visits: PatientVisits) -> None:
        self._visits = visits

    async def visits(self, patient_id: str) -> PatientVisits:
        return self._visits


def test_segments_parse_and_round_trip() -> None:
    for text, segment in (
        ("all", Segment()),
        ("branch:b-2", Segment("branch", branch_id="b-2")),
        ("lapsed:2026-06-01", Segment("lapsed", before=date(2026, 6, 1))),
    ):
        assert Segment.parse(text) == segment
        assert Segment.from_dict(segment.as_dict()) == segment
    for bad in ("", "branch:", "lapsed:yesterday", "everyone"):
        with pytest.raises(ValueError):
            Segment.parse(bad)


def test_segment_matching() -> None:
    old = FakeMis(PatientVisits(past=(visit(-200, AppointmentStatus.FULFILLED),)))
    booked = FakeMis(
        PatientVisits(
            upcoming=(visit(3, AppointmentStatus.BOOKED),), past=(visit(-200, AppointmentStatus.FULFILLED),)
        )
    )
    cancelled_only = FakeMis(PatientVisits(past=(visit(-5, AppointmentStatus.CANCELLED, "b-2"),)))

    def matches(segment: str, mis: FakeMis, patient: str | None = "p") -> bool:
        return asyncio.run(Segment.parse(segment).matches(mis, patient))

    assert matches("all", old, None)
    assert matches("lapsed:2026-06-01", old) and not matches("lapsed:2026-01-01", old)
    assert not matches("lapsed:2026-06-01", booked)  # something is booked: not lapsed
    assert not matches("lapsed:2026-06-01", cancelled_only)  # never attended
    assert matches("branch:b-1", booked) and not matches("branch:b-2", cancelled_only)
    assert not matches("branch:b-1", old, None)  # not linked: no visits known


def test_campaign_texts() -> None:
    campaign = Campaign(texts={"ru": "Привет", "en": "Hello"})
    assert (
        campaign.text("en") == "Hello" and campaign.text(None) == "Привет" and campaign.text("de") == "Привет"
    )
    for texts in ({"en": "Hello"}, {"ru": " "}, {"ru": "x", "de": "y"}, {"ru": "x" * 4097}):
        with pytest.raises(ValueError):
            Campaign(texts=texts)
    with pytest.raises(ValueError):
        Campaign(texts={"ru": "x"}, total_segments=0)


def test_every_message_can_unsubscribe() -> None:
    markup = unsubscribe_markup("en")
    assert markup["inline_keyboard"][0][0] == {
        "text": "🔕 Unsubscribe",
        "callback_data": UNSUBSCRIBE_CALLBACK,
    }
