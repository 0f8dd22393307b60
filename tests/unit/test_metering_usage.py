"""The usage counters, the batched rollup buffer and the per-invocation publishing (pure, no AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clinicbot.metering import MessageKind, Meter, MeteringConfig, Usage, record, record_message, recording
from clinicbot.metering.emf import METRICS_PER_CLINIC, EmfPublisher
from clinicbot.metering.instrument import (
    CountingProxy,
    count_bot_call,
    count_response_body,
    meter_bot_api_client,
)
from clinicbot.metering.rollup import InMemoryRollupStore, RollupBuffer, month_of
from clinicbot.metering.runtime import valid_clinic_id
from clinicbot.metering.usage import message_kind_of_reminder


def test_usage_counts_messages_by_kind_and_merges() -> None:
    usage = Usage()
    usage.add("updates", 2)
    usage.message(MessageKind.REPLY, 3)
    usage.message("relay")
    usage.add("inv.webhook")
    other = Usage.of({"updates": 1, "msg.reply": 1, "inv.reminders": 4})
    usage.merge(other)
    assert usage["updates"] == 3 and usage["msg.reply"] == 4 and usage["msg.relay"] == 1
    assert usage.messages() == {MessageKind.REPLY: 4, MessageKind.RELAY: 1}
    assert usage.messages_total == 5
    assert usage.per_function("inv") == {"webhook": 1, "reminders": 4}
    assert usage["nothing"] == 0 and "nothing" not in usage.as_dict()
    with pytest.raises(ValueError):
        usage.add("updates", -1)


def test_record_outside_an_invocation_is_a_no_op_and_inside_lands_in_it() -> None:
    record("updates")  # nothing to count into: no error
    with recording() as usage:
        record("mis", 2)
        record_message(MessageKind.SURVEY)
    record("mis")
    assert usage.as_dict() == {"mis": 2, "msg.survey": 1}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("visit", "reminder"), ("med", "reminder"), ("memo_before", "memo"), ("memo_after", "memo"),
     ("survey", "survey"), ("broadcast", "broadcast"), ("something_new", "reminder")],
)  # fmt: skip
def test_reminder_item_kinds_map_to_message_kinds(kind: str, expected: str) -> None:
    assert message_kind_of_reminder(kind).value == expected


def test_buffer_flushes_after_n_invocations_in_one_atomic_write() -> None:
    store = InMemoryRollupStore()
    now = [1_790_000_000.0]
    buffer = RollupBuffer(store, "c1", max_invocations=3, max_seconds=300, clock=lambda: now[0])
    for _ in range(2):
        buffer.add(Usage.of({"updates": 1, "msg.reply": 2}))
        assert not buffer.due() and store.writes == 0
    buffer.add(Usage.of({"updates": 1}))
    assert buffer.due()
    assert buffer.maybe_flush() == 1
    assert store.writes == 1
    [item] = store.month(month_of(now[0]))
    assert item.usage.as_dict() == {"updates": 3, "msg.reply": 4} and item.flushes == 1
    assert not buffer.pending and not buffer.due()


def test_buffer_flushes_after_t_seconds_checked_at_the_next_invocation() -> None:
    store = InMemoryRollupStore()
    now = [1_790_000_000.0]
    buffer = RollupBuffer(store, "c1", max_invocations=50, max_seconds=300, clock=lambda: now[0])
    buffer.add(Usage.of({"updates": 1}))
    now[0] += 299
    assert buffer.maybe_flush() == 0
    now[0] += 1
    assert buffer.maybe_flush() == 1 and store.writes == 1


def test_buffer_splits_at_a_month_boundary_and_keeps_counts_when_the_store_fails() -> None:
    class Flaky(InMemoryRollupStore):
        fail = True

        def add(self, month: str, clinic: str, counts: Any, *, now: float) -> None:
            if self.fail:
                raise RuntimeError("throttled")
            super().add(month, clinic, counts, now=now)

    store = Flaky()
    november_end = 1_796_083_199.0  # 2026-11-30 23:59:59 UTC
    now = [november_end]
    buffer = RollupBuffer(store, "c1", max_invocations=1, clock=lambda: now[0])
    buffer.add(Usage.of({"updates": 1}))
    now[0] += 2
    buffer.add(Usage.of({"updates": 5}))
    assert sorted(buffer.pending) == ["2026-11", "2026-12"]
    assert buffer.flush() == 0 and buffer.failures == 1 and sorted(buffer.pending) == ["2026-11", "2026-12"]
    store.fail = False
    assert buffer.flush() == 2
    assert store.month("2026-11")[0].usage["updates"] == 1 and store.month("2026-12")[0].usage["updates"] == 5


def test_meter_counts_invocations_cold_start_and_flushes_billable_scheduled_runs() -> None:
    store = InMemoryRollupStore()
    meter = Meter("reminders", config=MeteringConfig(clinic="c9"), store=store, flush_every_run=True)
    for _ in range(2):
        with meter.invocation() as usage:
            usage.message(MessageKind.REMINDER, 2)
    assert store.writes == 2
    [item] = store.items.values()
    assert item.clinic == "c9"
    assert item.usage["inv.reminders"] == 2 and item.usage["cold.reminders"] == 1
    assert item.usage["msg.reminder"] == 4 and item.usage["ms.reminders"] >= 2
    assert item.usage["initms.reminders"] > 0
    with meter.invocation():  # an idle run (nothing sent, no MIS call): no write of its own
        pass
    assert store.writes == 2 and meter.buffer.pending
    with meter.invocation() as usage:
        usage.add("mis")
    assert store.writes == 3 and not meter.buffer.pending
    [item] = store.items.values()
    assert item.usage["inv.reminders"] == 4 and item.usage["mis"] == 1


def test_metering_config_from_the_environment() -> None:
    config = MeteringConfig.from_env(
        {
            "CLINICBOT_CLINIC_ID": "clinic-42",
            "CLINICBOT_USAGE_METRICS": "on",
            "CLINICBOT_USAGE_FLUSH_INVOCATIONS": "7",
        }
    )
    assert (config.clinic, config.metrics, config.flush_invocations, config.flush_seconds) == (
        "clinic-42",
        True,
        7,
        300,
    )
    assert MeteringConfig.from_env({}) == MeteringConfig()
    with pytest.raises(ValueError):
        valid_clinic_id("no spaces please")


def test_emf_documents_carry_the_clinic_dimension_and_skip_zero_counters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    usage = Usage.of({"updates": 2, "mis": 1, "msg.reply": 3, "msg.relay": 1, "inv.webhook": 2})
    assert EmfPublisher(clinic="c1", function="webhook", enabled=True).publish(usage) == 3
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(d["clinic"] == "c1" and d["service"] == "clinicbot" for d in docs)
    plain = docs[0]
    assert plain["UpdatesHandled"] == [2.0] and plain["MisCalls"] == [1.0] and "CrmCalls" not in plain
    assert plain["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ClinicBot"
    kinds = {d["kind"]: d["MessagesSent"] for d in docs[1:]}
    assert kinds == {"reply": [3.0], "relay": [1.0]}
    assert METRICS_PER_CLINIC == 10


def test_metrics_off_writes_one_log_line_and_no_emf(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="clinicbot.metering.emf")
    assert EmfPublisher(clinic="c1", function="webhook").publish(Usage.of({"updates": 1})) == 0
    assert capsys.readouterr().out == ""
    [record_] = [r for r in caplog.records if r.getMessage() == "usage"]
    assert record_.usage == {"updates": 1} and record_.clinic == "c1"  # type: ignore[attr-defined]


def test_reply_or_relay_depends_on_the_chat_of_the_update() -> None:
    with recording() as usage:
        usage.chat_id = 100
        assert count_bot_call("sendMessage", 100) is MessageKind.REPLY
        assert count_bot_call("copyMessage", -1001234567890) is MessageKind.RELAY
        assert count_bot_call("answerCallbackQuery", 100) is None
        assert count_bot_call("editMessageText", 100) is MessageKind.REPLY
        assert (
            count_response_body({"body": json.dumps({"method": "sendMessage", "chat_id": 100})})
            is MessageKind.REPLY
        )
        assert count_response_body({"body": "{}"}) is None
    assert usage.as_dict() == {"msg.reply": 3, "msg.relay": 1}


def test_counting_proxy_counts_port_calls_and_forwards_everything_else() -> None:
    class Port:
        capabilities = frozenset({"hold"})
        calls = 0

        async def visits(self, patient_id: str) -> str:
            return f"visits of {patient_id}"

        def close(self) -> None: ...

    import asyncio

    target = Port()
    proxy: Any = CountingProxy(target, "mis", {"visits"})
    with recording() as usage:
        assert asyncio.run(proxy.visits("p1")) == "visits of p1"
        proxy.close()
        assert proxy.capabilities == {"hold"}
        proxy.calls = 5
    assert target.calls == 5 and usage.as_dict() == {"mis": 1}


def test_bot_api_client_wrapper_counts_only_message_methods() -> None:
    import asyncio

    class Client:
        async def call(self, method: str, /, **params: Any) -> Any:
            return {"method": method}

    client = meter_bot_api_client(Client(), MessageKind.RELAY)
    assert meter_bot_api_client(client, MessageKind.REPLY) is client  # wrapped once
    with recording() as usage:
        asyncio.run(client.call("sendMessage", chat_id=1, text="x"))
        asyncio.run(client.call("createForumTopic", chat_id=-100, name="t"))
    assert usage.as_dict() == {"msg.relay": 1}
