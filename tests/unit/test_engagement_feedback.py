"""Feedback domain: anonymity, NPS, the interval of the NPS question, the monthly report."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from clinicbot.engagement.feedback import (
    IMPROVEMENTS,
    Entry,
    EntryKind,
    month_of,
    monthly_report,
    net_promoter_score,
    nps_due,
)


def rating(score: int, doctor: str = "d-01", month: str = "2026-11", **extra: object) -> Entry:
    values: dict[str, object] = {"anonymous": True, **extra}
    return Entry(EntryKind.RATING, month, "Клиника", "b-1", doctor, score, **values)  # type: ignore[arg-type]


def test_an_anonymous_answer_cannot_carry_a_link_to_the_patient() -> None:
    for link in (
        {"owner": 42},
        {"patient_id": "p-1"},
        {"appointment_id": "a-1"},
        {"created_at": datetime.now(UTC)},
    ):
        with pytest.raises(ValueError):
            rating(4, **link)
    with pytest.raises(ValueError):
        rating(4, anonymous=False)  # a named one needs its owner
    assert rating(4, anonymous=False, owner=42, patient_id="p-1").owner == 42


@pytest.mark.parametrize("score", [0, 6, -1])
def test_ratings_are_1_to_5(score: int) -> None:
    with pytest.raises(ValueError):
        rating(score)


def test_nps_answers_are_0_to_10_and_options_are_the_fixed_ones() -> None:
    Entry(EntryKind.NPS, "2026-11", "c", "b", "d", 0, anonymous=True)
    Entry(EntryKind.NPS, "2026-11", "c", "b", "d", 10, anonymous=True)
    with pytest.raises(ValueError):
        Entry(EntryKind.NPS, "2026-11", "c", "b", "d", 11, anonymous=True)
    with pytest.raises(ValueError):
        rating(3, improvements=("parking",))
    assert rating(3, improvements=IMPROVEMENTS).improvements == IMPROVEMENTS
    with pytest.raises(ValueError):
        rating(3, comment="x" * 501)


def test_net_promoter_score() -> None:
    assert net_promoter_score([]) is None
    assert net_promoter_score([10, 9, 8, 7]) == 50.0
    assert net_promoter_score([0, 6, 10]) == -33.3
    assert net_promoter_score([7, 8]) == 0.0


@pytest.mark.parametrize(
    ("last", "now", "months", "due"),
    [
        (None, "2026-11-23", 6, True),
        ("2026-05-23", "2026-11-23", 6, True),
        ("2026-05-24", "2026-11-23", 6, False),
        ("2026-11-01", "2026-11-30", 1, False),
        ("2025-12-31", "2026-01-31", 1, True),
    ],
)
def test_the_nps_question_at_most_every_n_months(last: str | None, now: str, months: int, due: bool) -> None:
    def at(day: str) -> datetime:
        return datetime.fromisoformat(day).replace(tzinfo=UTC)

    assert nps_due(at(last) if last else None, at(now), months) is due


def test_month_of_uses_the_branch_time_zone() -> None:
    late = datetime(2026, 11, 30, 22, 30, tzinfo=UTC)  # already December in Moscow
    assert month_of(late) == "2026-11"
    assert month_of(late, "Europe/Moscow") == "2026-12"


def test_monthly_report_per_doctor_and_month() -> None:
    entries = [
        rating(5),
        rating(3),
        rating(4, doctor="d-02"),
        rating(1, month="2026-10"),
        Entry(EntryKind.NPS, "2026-11", "c", "b", "d-01", 10, anonymous=True),
        Entry(EntryKind.NPS, "2026-11", "c", "b", "d-01", 5, anonymous=False, owner=1),
    ]
    rows = {(r.month, r.doctor_id): r for r in monthly_report(entries)}
    assert list(rows) == [("2026-10", "d-01"), ("2026-11", "d-01"), ("2026-11", "d-02")]
    assert rows[("2026-11", "d-01")].average == 4.0 and rows[("2026-11", "d-01")].nps == 0.0
    assert rows[("2026-11", "d-02")].nps is None and rows[("2026-10", "d-01")].average == 1.0
