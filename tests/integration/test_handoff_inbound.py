"""POST /crm/inbound: the CRM -> patient route of the hand-off function. Standard Webhooks signature and
timestamp checked, a replayed webhook-id has no effect, documents reach the patient protected and pass
through (nothing stored), a blocked patient and a failing Telegram have defined answers."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from clinicbot.config import Settings
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.outbox import InMemoryOutbox
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from clinicbot.handoff.signing import signed_headers
from clinicbot.handoff.store import DynamoHandoffStore
from clinicbot.local.fake_crm import TEST_CRM_SECRET, sign_event
from tests.harness import load_event

SAMPLE = load_event("handoff/inbound-crm")
SAMPLE_TS = int(SAMPLE["headers"]["webhook-timestamp"])
PATIENT = 8201


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(SAMPLE_TS + 2)


@pytest.fixture
def store(aws: object) -> DynamoHandoffStore:
    store = DynamoHandoffStore()
    number = HandoffDesk(store, InMemoryOutbox()).submit(
        "certificate_request",
        {"patient_id": "p-001", "years": [datetime.now(UTC).year - 1], "relation": "self",
         "taxpayer_full_name": "Кузьмина Анна", "inn": "500100732259", "birth_date": "1980-03-05"},
        user_id=PATIENT, key="certificate:8201:1",
    )  # fmt: skip
    assert number == "1001"  # the number the sample answers
    store.bind_thread("webhook", PATIENT, "c_sampleconversation")
    return store


@pytest.fixture
def app(store: DynamoHandoffStore, botapi: Any, mis: Any, clock: Clock) -> Iterator[HandoffApp]:
    settings = Settings(telegram_api_base=botapi.base_url, crm_provider="webhook", crm_url="https://crm.example/hook",  # type: ignore[call-arg]
                        crm_secret=TEST_CRM_SECRET)  # fmt: skip
    handoff = build_handoff(settings, store=store, mis=mis, clock=clock)
    yield handoff
    handoff.close()


def call(body: dict[str, Any], *, msg_id: str = "msg_test_1", now: float = SAMPLE_TS) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLE)
    raw = json.dumps(body, ensure_ascii=False)
    event["body"] = raw
    event["headers"] = {k: v for k, v in event["headers"].items() if not k.startswith("webhook-")}
    event["headers"].update(signed_headers(TEST_CRM_SECRET, msg_id, raw, now=now))
    return event


def answer(app: HandoffApp, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.handle_http(event)
    return response["statusCode"], json.loads(response["body"])


def test_certificate_ready_reaches_the_patient_protected(app: HandoffApp, botapi: Any) -> None:
    status, body = answer(app, SAMPLE)
    assert status == 200 and body["delivered"] is True
    [sent] = botapi.calls_of("sendDocument", ok_only=True)
    assert sent.chat_id == PATIENT and sent.params["protect_content"] is True
    assert (
        sent.params["document"]["upload"] is True
        and sent.params["document"]["filename"] == "spravka-1001.pdf"
    )
    assert "Обращение №1001: готово" in sent.params["caption"] and "регистратуре" in sent.params["caption"]


def test_a_replayed_webhook_id_has_no_effect(app: HandoffApp, botapi: Any) -> None:
    assert answer(app, SAMPLE)[0] == 200
    assert answer(app, SAMPLE) == (200, {"status": "duplicate"})
    assert len(botapi.calls_of("sendDocument")) == 1


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda e: e["headers"].pop("webhook-signature"), "missing-headers"),
        (lambda e: e.update(body=e["body"].replace("1001", "1002")), "bad-signature"),
        (lambda e: e["headers"].update({"webhook-signature": "v1," + "A" * 44}), "bad-signature"),
    ],
)
def test_forged_calls_are_refused(app: HandoffApp, botapi: Any, mutate: Any, problem: str) -> None:
    event = copy.deepcopy(SAMPLE)
    mutate(event)
    assert answer(app, event) == (401, {"error": problem})
    assert botapi.calls_of("sendDocument") == []


def test_stale_timestamps_are_refused(app: HandoffApp, clock: Clock, botapi: Any) -> None:
    clock.now = SAMPLE_TS + 301
    assert answer(app, SAMPLE) == (401, {"error": "stale-timestamp"})
    clock.now = SAMPLE_TS - 301
    assert answer(app, SAMPLE) == (401, {"error": "stale-timestamp"})
    assert botapi.calls_of("sendDocument") == []


def test_a_message_by_conversation_in_the_patients_language(app: HandoffApp, botapi: Any) -> None:
    from clinicbot.storage.models import PROFILE_SK, ProfileItem, user_pk

    ProfileItem(pk=user_pk(PATIENT), sk=PROFILE_SK, created_at=datetime.now(UTC), language="en").save()
    status, body = answer(app, call({"type": "message", "conversation_id": "c_sampleconversation",
                                     "text": "Your results are with the doctor."}))  # fmt: skip
    assert status == 200 and body["delivered"] is True
    [sent] = botapi.calls_of("sendMessage", ok_only=True)
    assert sent.chat_id == PATIENT and sent.params["text"].startswith("💬 ")
    assert "Your results are with the doctor." in sent.params["text"]
    status_answer = answer(
        app, call({"type": "status", "request_number": "1001", "status": "in_progress"}, msg_id="m2")
    )
    assert status_answer[0] == 200
    assert botapi.calls_of("sendMessage")[-1].params["text"] == "⏳ Request no. 1001 is in progress."


def test_unknown_patients_and_invalid_bodies(app: HandoffApp) -> None:
    assert answer(app, call({"type": "message", "conversation_id": "c_nobody", "text": "hi"}))[0] == 404
    status, body = answer(app, call({"type": "message", "request_number": "1001"}, msg_id="m3"))
    assert status == 422 and body["error"] == "invalid body"
    status, _ = answer(app, call({"type": "message", "request_number": "1001",
                                  "document": {"url": "http://insecure.example/x.pdf"}}, msg_id="m4"))  # fmt: skip
    assert status == 422


def test_a_blocked_patient_is_reported_to_the_crm(app: HandoffApp, botapi: Any) -> None:
    botapi.block_chat(PATIENT)
    assert answer(app, SAMPLE) == (200, {"delivered": False, "reason": "patient_blocked_bot"})


def test_telegram_failing_asks_the_crm_to_retry_and_the_retry_is_let_through(
    app: HandoffApp, botapi: Any
) -> None:
    botapi.fail_next("sendDocument", 502, times=3)
    response = app.handle_http(SAMPLE)
    assert response["statusCode"] == 503 and response["headers"]["Retry-After"] == "30"
    status, body = answer(app, SAMPLE)  # the CRM's retry: same webhook-id, not a replay
    assert status == 200 and body["delivered"] is True
    assert len(botapi.calls_of("sendDocument", ok_only=True)) == 1


def test_the_sample_through_the_function(
    store: DynamoHandoffStore, botapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m clinicbot invoke handoff events/handoff/inbound-crm.json``: the sample's signature is for a
    fixed moment, so the function rightly refuses it as stale; re-signed now (``fake_crm sign``) it passes."""
    monkeypatch.setenv("CLINICBOT_TELEGRAM_API_BASE", botapi.base_url)
    monkeypatch.setenv("CLINICBOT_CRM_PROVIDER", "webhook")
    monkeypatch.setenv("CLINICBOT_CRM_URL", "https://crm.example/hook")
    monkeypatch.setenv("CLINICBOT_CRM_SECRET", TEST_CRM_SECRET)
    from clinicbot.local.lambda_runner import invoke

    try:
        stale = invoke("handoff", SAMPLE)
        assert stale["statusCode"] == 401 and json.loads(stale["body"]) == {"error": "stale-timestamp"}
        fresh = invoke("handoff", sign_event(SAMPLE))
        assert fresh["statusCode"] == 200 and json.loads(fresh["body"])["delivered"] is True
        assert invoke("handoff", {"unexpected": True})["statusCode"] == 400
    finally:
        module = sys.modules.pop("clinicbot_fn_handoff", None)
        if module is not None:
            module.APP.close()
