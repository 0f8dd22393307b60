"""The per-update unit of work against DynamoDB (moto): one read, one write, optimistic locking."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from clinicbot.storage.unit import DialogueKey, StateUnit

KEY = DialogueKey(bot_id=1, chat_id=42, user_id=42)
TTL = 3600


def unit() -> StateUnit:
    return StateUnit(dialogue_ttl_seconds=TTL)


def test_many_fsm_calls_cost_one_read_and_one_write(aws: Any, ddb: Any) -> None:
    u = unit()
    for step in range(5):  # aiogram calls these several times per step
        u.get_state(KEY)
        data = u.get_data(KEY)
        data[f"k{step}"] = step
        u.set_data(KEY, data)
        u.set_state(KEY, f"Flow:step{step}")
    u.mark_handled(KEY, 1)
    u.flush()
    assert (ddb.reads, ddb.writes) == (1, 1)

    ddb.reset()
    again = unit()
    assert again.get_state(KEY) == "Flow:step4"
    assert again.get_data(KEY) == {f"k{i}": i for i in range(5)}
    again.set_data(KEY, again.get_data(KEY))  # same data: no change
    again.set_state(KEY, "Flow:step4")
    again.flush()
    assert (ddb.reads, ddb.writes) == (1, 0)


def test_setting_a_value_back_is_no_change(aws: Any, ddb: Any) -> None:
    u = unit()
    u.set_data(KEY, {"a": 1})
    u.set_data(KEY, {})
    u.set_state(KEY, "X")
    u.set_state(KEY, None)
    u.flush()
    assert ddb.writes == 0


def test_concurrent_updates_of_one_chat_lose_nothing(aws: Any) -> None:
    seed = unit()
    seed.set_data(KEY, {"shared": 0})
    seed.flush()

    first, second = unit(), unit()
    first.preload(42)
    second.preload(42)  # both read the same version
    d1 = first.get_data(KEY)
    d1["doctor"] = "d-1"
    first.set_data(KEY, d1)
    first.set_state(KEY, "Booking:day")
    first.mark_handled(KEY, 101)
    d2 = second.get_data(KEY)
    d2["note"] = "from second"
    d2.pop("shared")
    second.set_data(KEY, d2)
    second.mark_handled(KEY, 102)
    first.flush()
    second.flush()  # conflicts, re-reads, re-applies its own changes on top

    final = unit()
    assert final.get_data(KEY) == {"doctor": "d-1", "note": "from second"}
    assert final.get_state(KEY) == "Booking:day"
    assert final.seen_update(KEY, 101) and final.seen_update(KEY, 102)


def test_concurrent_card_and_dialogue_writes_both_survive(aws: Any) -> None:
    seed = unit()
    seed.save_card(42, consent_at=datetime.now(UTC), consent_version="1")
    seed.flush()
    first, second = unit(), unit()
    first.preload(42)
    second.preload(42)
    first.save_card(42, language="en")
    first.set_state(KEY, "A")
    second.save_card(42, patient_id="p-1")
    first.flush()  # TransactWriteItems: card + dialogue
    second.flush()  # conflict on the card, rebased
    final = unit().card(42)
    assert final is not None and final.language == "en" and final.patient_id == "p-1"


def test_duplicate_detection_window(aws: Any) -> None:
    u = unit()
    u.set_state(KEY, "S")
    u.mark_handled(KEY, 5000)
    u.flush()
    later = unit()
    assert later.seen_update(KEY, 5000)
    assert not later.seen_update(KEY, 5001)


def test_dialogue_items_expire_by_ttl_and_cards_do_not(aws: Any) -> None:
    u = unit()
    u.save_card(42, consent_at=datetime.now(UTC), consent_version="1")
    u.set_state(KEY, "S")
    u.flush()
    items = {i["sk"]["S"]: i for i in aws.scan(TableName="clinicbot-state")["Items"]}
    dialogue = next(v for k, v in items.items() if k.startswith("DIALOG#"))
    expires = int(dialogue["expires_at"]["N"])
    assert abs(expires - (datetime.now(UTC).timestamp() + TTL)) < 60
    assert "expires_at" not in items["PROFILE"]
    ttl = aws.describe_time_to_live(TableName="clinicbot-state")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"


def test_erase_user_removes_the_whole_partition(aws: Any) -> None:
    u = unit()
    u.save_card(42, consent_at=datetime.now(UTC), consent_version="1", patient_id="p-9")
    u.set_data(KEY, {"x": 1})
    u.set_data(DialogueKey(bot_id=1, chat_id=-100, user_id=42, thread_id=7), {"y": 2})
    u.flush()
    other = unit()
    other.set_state(DialogueKey(bot_id=1, chat_id=43, user_id=43), "S")
    other.flush()
    eraser = unit()
    eraser.erase_user(42)
    eraser.flush()
    left = aws.scan(TableName="clinicbot-state")["Items"]
    assert [i["pk"]["S"] for i in left] == ["USER#43"]


def test_unknown_card_field_is_rejected(aws: Any) -> None:
    with pytest.raises(ValueError):
        unit().save_card(42, phone="79160000000")


def test_group_updates_are_deduplicated_even_without_a_patient_card(aws: Any) -> None:
    staff_in_topic = DialogueKey(bot_id=1, chat_id=-1001234, user_id=77, thread_id=5)
    u = unit()
    u.mark_handled(staff_in_topic, 9001)
    u.flush()
    assert unit().seen_update(staff_in_topic, 9001)
    stranger = DialogueKey(bot_id=1, chat_id=78, user_id=78)
    s = unit()
    s.mark_handled(stranger, 9002)
    s.flush()
    assert aws.scan(TableName="clinicbot-state")["Count"] == 1  # only the staff marker
