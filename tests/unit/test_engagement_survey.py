"""The post-visit survey's callback data: built without aiogram (the reminders function), parsed by the
bot's aiogram factory; both agree, and stay within Telegram's 64 bytes."""

from __future__ import annotations

import pytest

from clinicbot.booking.refs import ref_of
from clinicbot.engagement.survey import FbAction, pack, rating_keyboard


def test_the_bot_parses_what_the_reminders_function_packs() -> None:
    from clinicbot.telegram.routers.feedback import FeedbackCb

    for appointment_id in ("a-0002", "0b9f6c9e-3b7e-4a1c-9d2f-6f1e2d3c4b5a", "Appointment/with:colon"):
        keyboard = rating_keyboard(appointment_id)
        for n, button in enumerate(keyboard["inline_keyboard"][0], start=1):
            data = button["callback_data"]
            assert len(data.encode()) <= 64
            parsed = FeedbackCb.unpack(data)
            assert (parsed.a, parsed.v, parsed.n) == ("r", ref_of(appointment_id), n)
            assert FeedbackCb(a="r", v=ref_of(appointment_id), n=n).pack() == data
    for action in FbAction:
        assert FeedbackCb.unpack(pack(action, "a-1", 1)).a == action.value


def test_too_long_data_is_refused() -> None:
    with pytest.raises(ValueError):
        pack(FbAction.RATE, "x" * 60, 1)


def test_the_unsubscribe_button_of_broadcasts_is_the_bots() -> None:
    from clinicbot.engagement.broadcasts import UNSUBSCRIBE_CALLBACK
    from clinicbot.telegram.routers.account import MarketingCb

    assert MarketingCb(a="off").pack() == UNSUBSCRIBE_CALLBACK
