"""Visit feedback through the webhook: the survey's rating buttons, "what could be better", a comment, named
or anonymous, the NPS question at most every N months, the low-rating hand-off, and the monthly report."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinicbot.engagement.feedback import LOW_RATING_KIND
from clinicbot.engagement.feedback_store import FeedbackItem
from clinicbot.engagement.survey import FeedbackSurvey
from clinicbot.i18n import Translator
from clinicbot.telegram.routers.feedback import FeedbackCb
from tests.harness import WebhookHarness, callback_update
from tests.integration.test_account_webhook import DEMO, alert, card_of, mine, patient, press, send_text, tap


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


MONTH = "2026-11"  # a-0002 of p-001 is 21 days before the demo clinic's "today" (2026-11-23)


def items() -> list[FeedbackItem]:
    return list(FeedbackItem.scan())


def test_the_survey_invitation_is_neutral_and_its_buttons_are_the_routers() -> None:
    from clinicbot.reminders.items import DueItem, Kind

    start = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    item = DueItem(
        user_id=1,
        item_id="a#a-0002#202611020800#sv",
        kind=Kind.SURVEY,
        planned_at=start + timedelta(hours=3),
        due_at=start + timedelta(hours=3),
        appointment_id="a-0002",
        start=start,
        doctor_id="d-06",
        branch_id="b-tverskaya",
    )
    message = FeedbackSurvey().message(item, card=None, t=Translator("ru"))
    assert message is not None
    assert "2 ноября" in message.text and "d-06" not in message.text  # a date, no doctor, no specialty
    buttons = message.reply_markup["inline_keyboard"][0]
    assert [FeedbackCb.unpack(b["callback_data"]).n for b in buttons] == [1, 2, 3, 4, 5]
    assert {FeedbackCb.unpack(b["callback_data"]).v for b in buttons} == {"a-0002"}


def test_anonymous_low_rating_with_ticks_and_comment(bot: WebhookHarness) -> None:
    user, _pid = patient(bot, 8201, phone=DEMO["p-001"])
    bot.send(callback_update(user, "fb:r:a-0002:2"))
    screen = mine(bot, user)
    assert "2 из 5" in screen.text
    press(bot, user, "Меньше ждать")
    press(bot, user, "Понятнее цены")
    press(bot, user, "Понятнее цены")  # untick
    press(bot, user, "Вежливее персонал")
    assert [b["text"] for b in mine(bot, user).buttons()][:3] == [
        "✅ Меньше ждать",
        "▫️ Внимательнее врач",
        "✅ Вежливее персонал",
    ]
    press(bot, user, "комментарий")
    assert "одним сообщением" in mine(bot, user).text
    said = send_text(bot, user, "Долго ждали в коридоре")
    assert "Долго ждали" in said.text
    press(bot, user, "Анонимно")
    assert "Спасибо за отзыв" in mine(bot, user).text and "порекомендуете" in mine(bot, user).text

    (rating,) = items()
    assert rating.kind == "rating" and rating.anonymous
    assert (rating.month, rating.doctor_id, rating.branch_id, rating.clinic) == (
        MONTH,
        "d-06",
        "b-profsoyuznaya",
        "Клиника Демо",
    )
    assert (
        rating.score == 2
        and rating.improvements == ["waiting", "staff"]
        and rating.comment == "Долго ждали в коридоре"
    )
    assert rating.owner is None and rating.patient_id is None and rating.appointment_id is None
    assert rating.created_at is None

    (handoff,) = bot.outbox.of_kind(LOW_RATING_KIND)
    assert handoff.payload["score"] == 2 and handoff.payload["anonymous"] is True
    assert "patient_id" not in handoff.payload and "appointment_id" not in handoff.payload
    assert handoff.payload["has_comment"] is True and "comment" not in handoff.payload

    press(bot, user, "10")
    assert "Спасибо" in mine(bot, user).text
    nps = [i for i in items() if i.kind == "nps"]
    assert len(nps) == 1 and nps[0].score == 10 and nps[0].anonymous and nps[0].owner is None
    assert nps[0].sk.split("#")[1] != rating.sk.split("#")[1]  # not even linkable to the anonymous rating


def test_named_rating_and_nps_at_most_every_n_months(bot: WebhookHarness) -> None:
    user, pid = patient(bot, 8202, phone=DEMO["p-001"])
    bot.send(callback_update(user, "fb:r:a-0002:5"))
    press(bot, user, "Отправить")
    assert "порекомендуете" in mine(bot, user).text
    assert card_of(user.id).nps_asked_at is not None
    press(bot, user, "Пропустить")
    (rating,) = items()
    assert not rating.anonymous and rating.owner == f"USER#{user.id}" and rating.patient_id == pid
    assert rating.appointment_id == "a-0002" and rating.score == 5
    assert not bot.outbox.of_kind(LOW_RATING_KIND)  # a 5 is not a hand-off

    # the same visit again: stored once, and no NPS question within the interval
    bot.send(callback_update(user, "fb:r:a-0002:4"))
    press(bot, user, "Отправить")
    assert "уже оценили" in mine(bot, user).text and "порекомендуете" not in mine(bot, user).text
    assert len(items()) == 1


def test_named_low_rating_reaches_the_staff_with_ids(bot: WebhookHarness) -> None:
    user, pid = patient(bot, 8203, phone=DEMO["p-001"])
    bot.send(callback_update(user, "fb:r:a-0002:1"))
    press(bot, user, "Внимательнее врач")
    press(bot, user, "Отправить")
    (handoff,) = bot.outbox.of_kind(LOW_RATING_KIND)
    assert handoff.payload["patient_id"] == pid and handoff.payload["appointment_id"] == "a-0002"
    assert handoff.payload["improvements"] == ["doctor"] and handoff.payload["doctor_id"] == "d-06"


def test_visits_that_cannot_be_rated(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8204, phone=DEMO["p-001"])
    for data in ("fb:r:a-0003:3", "fb:r:a-0005:3", "fb:r:no-such:3", "fb:r:a-0002:9"):
        bot.send(callback_update(user, data))  # a no-show, someone else's visit, nothing, a forged score
        assert "завершён или устарел" in alert(bot), data
    assert items() == []


def test_stale_buttons_change_nothing(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8205, phone=DEMO["p-001"])
    bot.send(callback_update(user, "fb:r:a-0002:3"))
    details = mine(bot, user)
    press(bot, user, "Отправить")
    press(bot, user, "Пропустить")
    press(bot, user, "Меньше ждать", said=details)  # the flow is over
    assert "завершён или устарел" in alert(bot)
    tap(bot, user, "fb:s:a-0002:1")
    assert "завершён или устарел" in alert(bot)
    assert len(items()) == 1


def test_rating_needs_a_linked_patient(bot: WebhookHarness) -> None:
    from tests.harness import TgUser

    bot.send(callback_update(TgUser(id=8206), "fb:r:a-0002:5"))
    assert "согласие" in alert(bot)


def test_feedback_steps_within_the_dynamodb_budget(bot: WebhookHarness, ddb: Any) -> None:
    user, _ = patient(bot, 8207, phone=DEMO["p-001"])
    ddb.reset()
    bot.send(callback_update(user, "fb:r:a-0002:4"))
    assert (ddb.reads, ddb.writes) == (1, 1)
    ddb.reset()
    press(bot, user, "Меньше ждать")
    assert (ddb.reads, ddb.writes) == (1, 1)
    ddb.reset()
    press(bot, user, "Отправить")
    assert (ddb.reads, ddb.writes) == (1, 2)  # the dialogue + the answer itself
    ddb.reset()
    press(bot, user, "8")
    assert (ddb.reads, ddb.writes) == (1, 2)


def test_monthly_report_per_doctor(bot: WebhookHarness) -> None:
    from clinicbot.cli import main

    for user_id, score, nps, anonymous in (
        (8211, 5, "10", False),
        (8212, 3, "6", True),
        (8213, 4, "9", True),
    ):
        user, _ = patient(bot, user_id, phone=DEMO["p-001"])
        bot.send(callback_update(user, f"fb:r:a-0002:{score}"))
        press(bot, user, "Анонимно" if anonymous else "Отправить")
        press(bot, user, nps)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["feedback-report", "--month", MONTH]) == 0
    report = out.getvalue()
    line = next(row for row in report.splitlines() if "(d-06)" in row)
    # 3 ratings averaging 4.00; NPS: 2 promoters (10, 9), 1 detractor (6) of 3 = +33.3
    assert line.split()[-4:] == ["3", "4.00", "3", "+33.3"], report
    assert "all doctors" in report
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["feedback-report", "--month", "2026-10", "--no-names"]) == 0
    assert "(no answers)" in out.getvalue()
