"""/mydata through the webhook: everything the bot stores about the patient, as a JSON document (a file
cannot travel in the webhook response: the webhook sends it itself)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import TgUser, WebhookHarness, callback_update, message_update
from tests.integration.test_account_webhook import DEMO, mine, patient, press, send_text


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    webhook.use_mis_clock()
    return webhook


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The JSON documents /mydata sent (the fake Bot API keeps only a file's name and size)."""
    from clinicbot.telegram.routers import privacy

    documents: list[dict[str, Any]] = []
    real = privacy.export_file

    def spy(*args: Any, **kwargs: Any) -> tuple[bytes, bool]:
        body, anything = real(*args, **kwargs)
        documents.append(json.loads(body))
        return body, anything

    monkeypatch.setattr(privacy, "export_file", spy)
    return documents


def test_mydata_sends_everything_as_a_json_file(
    bot: WebhookHarness, exported: list[dict[str, Any]], ddb: Any
) -> None:
    user, pid = patient(bot, 8501, phone=DEMO["p-001"])
    press(bot, user, "Мой кабинет")
    press(bot, user, "Моя ссылка")
    bot.send(callback_update(user, "fb:r:a-0002:4"))
    press(bot, user, "Отправить")
    press(bot, user, "Пропустить")
    ddb.reset()
    bot.send(message_update(user, "/mydata"))
    assert (
        ddb.writes == 1 and ddb.reads >= 2
    )  # the partition again + every other store: asked for, so paid for

    (document,) = [s for s in bot.said if s.method == "sendDocument"]
    assert document.via == "api"  # sent by the webhook itself, not in the response body
    assert document.params["document"]["filename"].startswith("my-data-")
    assert "Всё, что бот хранит о вас" in document.params["caption"]
    (data,) = exported
    assert data["telegram_user_id"] == user.id and data["patient_id"] == pid
    stores = data["stores"]
    assert stores["state"]["card"]["patient_id"] == pid and stores["state"]["card"]["consent_version"] == "1"
    assert stores["state"]["referral_link"]["joined"] == 0
    assert stores["state"]["dialogue"][0]["recent_updates"]  # the webhook's idempotency records too
    (answer,) = stores["feedback"]["answers"]
    assert answer["appointment_id"] == "a-0002" and answer["score"] == 4


def test_the_account_button_does_the_same(bot: WebhookHarness, exported: list[dict[str, Any]]) -> None:
    user, _ = patient(bot, 8502)
    press(bot, user, "Мой кабинет")
    press(bot, user, "Мои данные")
    assert [s.method for s in bot.said].count("sendDocument") == 1
    assert exported[0]["stores"]["state"]["card"]


def test_a_stranger_is_told_nothing_is_stored(bot: WebhookHarness, exported: list[dict[str, Any]]) -> None:
    stranger = TgUser(id=8503)
    said = send_text(bot, stranger, "/mydata")
    assert "ничего о вас не храним" in said.text
    assert not [s for s in bot.said if s.method == "sendDocument"]


def test_english(bot: WebhookHarness, exported: list[dict[str, Any]]) -> None:
    user, _ = patient(bot, 8504, language="en")
    bot.send(message_update(user, "/forget"))
    assert "Delete all your data" in mine(bot, user).text
    press(bot, user, "No, keep it")
    bot.send(message_update(user, "/mydata"))
    document = next(s for s in bot.said if s.method == "sendDocument")
    assert "Everything the bot stores about you" in document.params["caption"]
