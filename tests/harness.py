"""Test harness: AWS under moto, the webhook as API Gateway invokes it, Telegram updates built like
Telegram builds them, and a record of everything the bot said (response bodies and Bot API calls)."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
TABLE_NAMES = {"StateTable": "clinicbot-state"}
TODAY = date(2026, 11, 23)  # a Monday; the demo clinic's schedule is generated from it
SECRET = "test-secret_0123456789"
BOT_ID = 123456789


@contextlib.contextmanager
def aws_tables() -> Iterator[Any]:
    from moto import mock_aws

    from clinicbot.infra.template import create_tables, default_table_names
    from clinicbot.storage import models

    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-central-1")
        names = default_table_names()
        create_tables(client, names)
        models.configure(table_name=names["StateTable"], region="eu-central-1")
        yield client


def demo_mis() -> Any:
    from clinicbot.adapters.mis_demo import DemoClinic

    return DemoClinic(today=TODAY)


def demo_patients() -> list[Any]:
    from clinicbot.adapters.mis_demo import load_demo_data

    return list(load_demo_data().patients)


class DdbCounter:
    """Counts DynamoDB API requests made through pynamodb (every adapter of the package uses it): by
    operation (``calls``), by (operation, table) (``requests``), and the items written per table (``items``:
    a BatchWriteItem counts its requests)."""

    READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})
    WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.items: Counter[str] = Counter()

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.calls.items() if op in self.READS)

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in self.WRITES)

    def to(self, table: str) -> dict[str, int]:
        """Requests to one table, by operation."""
        return {op: n for (op, t), n in self.requests.items() if t == table}

    def writes_to(self, *tables: str) -> int:
        return sum(n for (op, t), n in self.requests.items() if t in tables and op in self.WRITES)

    def reset(self) -> None:
        self.calls.clear()
        self.requests.clear()
        self.items.clear()

    def record(self, operation: str, kwargs: dict[str, Any]) -> None:
        self.calls[operation] += 1
        batch = kwargs.get("RequestItems") or {}
        for table in list(batch) or [kwargs.get("TableName", "")]:
            self.requests[(operation, table)] += 1
            if operation == "BatchWriteItem":
                self.items[table] += len(batch[table])
            elif operation in self.WRITES:
                self.items[table] += 1

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[DdbCounter]:
        from pynamodb.connection.base import Connection

        counter = cls()
        original = Connection._make_api_call

        def counting(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
            counter.record(operation_name, operation_kwargs)
            return original(self, operation_name, operation_kwargs)

        Connection._make_api_call = counting  # type: ignore[method-assign]
        try:
            yield counter
        finally:
            Connection._make_api_call = original  # type: ignore[method-assign]


def load_event(name: str) -> dict[str, Any]:
    """A sample event from events/ (e.g. "webhook/start")."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def http_event(update: dict[str, Any] | str, *, secret: str | None = SECRET) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as it reaches the webhook function."""
    event = copy.deepcopy(load_event("webhook/start"))
    event["body"] = update if isinstance(update, str) else json.dumps(update, ensure_ascii=False)
    headers = {k: v for k, v in event["headers"].items() if k != "x-telegram-bot-api-secret-token"}
    if secret is not None:
        headers["x-telegram-bot-api-secret-token"] = secret
    event["headers"] = headers
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    return event


_update_ids = itertools.count(10_000)
_message_ids = itertools.count(500)


@dataclass
class TgUser:
    id: int = 4242
    first_name: str = "Анна"
    last_name: str | None = "Иванова"
    language_code: str | None = "ru"
    username: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        for name in ("last_name", "language_code", "username"):
            if getattr(self, name) is not None:
                data[name] = getattr(self, name)
        return data

    def chat(self) -> dict[str, Any]:
        return {"id": self.id, "type": "private", "first_name": self.first_name}


def message_update(user: TgUser, text: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "date": int(time.time()),
        "chat": user.chat(),
        "from": user.as_dict(),
    }
    if text is not None:
        message["text"] = text
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    message.update(extra)
    return {"update_id": next(_update_ids), "message": message}


def contact_update(user: TgUser, phone: str, *, owner_id: int | None = None) -> dict[str, Any]:
    contact: dict[str, Any] = {"phone_number": phone, "first_name": user.first_name}
    if user.last_name:
        contact["last_name"] = user.last_name
    owner = user.id if owner_id is None else owner_id
    if owner:
        contact["user_id"] = owner
    return message_update(user, contact=contact)


def callback_update(user: TgUser, data: str, *, message_id: int = 1) -> dict[str, Any]:
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": str(next(_update_ids)),
            "from": user.as_dict(),
            "chat_instance": "ci-1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": user.chat(),
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "ClinicBot"},
                "text": "…",
            },
        },
    }


@dataclass
class Said:
    """One thing the bot said: a Bot API method with its parameters."""

    method: str
    params: dict[str, Any]
    via: str  # "response" (webhook response body) or "api" (a call to the Bot API)
    message_id: int | None = None

    @property
    def text(self) -> str:
        return str(self.params.get("text") or self.params.get("caption") or "")

    @property
    def markup(self) -> dict[str, Any]:
        markup = self.params.get("reply_markup") or {}
        return json.loads(markup) if isinstance(markup, str) else markup

    def buttons(self) -> list[dict[str, Any]]:
        markup = self.markup
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        return [button for row in rows for button in row]

    def button(self, label_part: str) -> dict[str, Any]:
        for button in self.buttons():
            if label_part.lower() in button["text"].lower():
                return button
        raise AssertionError(f"no button with {label_part!r} in {[b['text'] for b in self.buttons()]}")


@dataclass
class WebhookHarness:
    app: Any
    botapi: Any
    mis: Any
    said: list[Said] = field(default_factory=list)
    last_response: dict[str, Any] | None = None

    @classmethod
    def create(cls, *, botapi: Any, mis: Any, **settings: Any) -> WebhookHarness:
        from clinicbot.config import Settings
        from clinicbot.telegram.webhook import build_webhook

        app = build_webhook(
            Settings(telegram_api_base=botapi.base_url, **settings),  # type: ignore[call-arg]
            mis=mis,
        )
        return cls(app=app, botapi=botapi, mis=mis)

    def close(self) -> None:
        self.app.close()
        self.app.loop.close()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Invoke the handler; then, like Telegram, execute a method carried in the response."""
        from clinicbot.local.chat import execute_response

        before = len(self.botapi.calls)
        response: dict[str, Any] = self.app.handle_event(event)
        self.last_response = response
        direct = len(self.botapi.calls) - before
        execute_response(response, self.botapi.api_url)
        for index, call in enumerate(self.botapi.calls[before:]):
            result = call.result if call.ok else None
            message_id = result.get("message_id") if isinstance(result, dict) else None
            via = "api" if index < direct else "response"
            self.said.append(Said(call.method, dict(call.params), via, message_id))
        return response

    def send(self, update: dict[str, Any], *, secret: str | None = SECRET) -> dict[str, Any]:
        return self.invoke(http_event(update, secret=secret))

    @property
    def outcome(self) -> Any:
        return self.app.processor.last_outcome

    def messages(self) -> list[Said]:
        """What the user would see as new or edited messages."""
        return [s for s in self.said if s.method in {"sendMessage", "editMessageText", "sendVenue"}]

    def last_message(self) -> Said:
        messages = self.messages()
        assert messages, "the bot said nothing"
        return messages[-1]

    def clear(self) -> None:
        self.said.clear()

    def press(self, user: TgUser, label_part: str, said: Said | None = None) -> dict[str, Any]:
        """Press an inline button (by part of its label) on the bot's last message, or on ``said``."""
        said = said or self.last_message()
        data = said.button(label_part)["callback_data"]
        return self.send(callback_update(user, data, message_id=said.message_id or 1))

    def onboard(self, user: TgUser, phone: str = "+7 916 000-11-22") -> None:
        """/start, consent and phone: a linked patient at the main menu."""
        self.send(message_update(user, "/start"))
        self.press(user, "✅")
        self.send(contact_update(user, phone))

    # ------------------------------------------------------------------ booking helpers
    @property
    def outbox(self) -> Any:
        """The hand-off outbox the dispatcher publishes to (an InMemoryOutbox in tests)."""
        return self.app.processor.dispatcher["outbox"]

    def use_mis_clock(self) -> None:
        """Let the booking wizard count "now" on the MIS's clock (the demo clinic runs on a clock of its
        own, starting at midnight UTC of ``TODAY``)."""
        self.app.processor.dispatcher["clock"] = mis_clock(self.mis)


def mis_clock(mis: Any) -> Any:
    """The MIS's notion of "now": the demo clinic's own clock, real UTC time for any other adapter."""
    from datetime import UTC, datetime

    clock = getattr(mis, "_now", None)
    return clock if callable(clock) else (lambda: datetime.now(UTC))


# ---------------------------------------------------------------------- hand-off helpers
STAFF_GROUP_ID = -1001234567890  # the staff supergroup of events/webhook/staff-reply.json


def group_chat(group_id: int = STAFF_GROUP_ID) -> dict[str, Any]:
    return {"id": group_id, "type": "supergroup", "title": "Clinic staff", "is_forum": True}


def group_message_update(
    user: TgUser, text: str, *, thread_id: int | None, group_id: int = STAFF_GROUP_ID, **extra: Any
) -> dict[str, Any]:
    """A message in the staff supergroup, in a forum topic when ``thread_id`` is given."""
    message: dict[str, Any] = {
        "message_id": next(_message_ids),
        "date": int(time.time()),
        "chat": group_chat(group_id),
        "from": user.as_dict(),
        "text": text,
    }
    if thread_id is not None:
        message.update(message_thread_id=thread_id, is_topic_message=True)
    message.update(extra)
    return {"update_id": next(_update_ids), "message": message}


def group_callback_update(
    user: TgUser,
    data: str,
    *,
    message_id: int,
    markup: dict[str, Any] | None = None,
    group_id: int = STAFF_GROUP_ID,
) -> dict[str, Any]:
    """A button pressed under a message the bot posted in the staff group."""
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": group_chat(group_id),
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "ClinicBot"},
        "text": "…",
    }
    if markup is not None:
        message["reply_markup"] = markup
    return {
        "update_id": next(_update_ids),
        "callback_query": {"id": str(next(_update_ids)), "from": user.as_dict(), "chat_instance": "ci-staff",
                           "data": data, "message": message},
    }  # fmt: skip


def drain_outbox(outbox: Any, handoff_app: Any) -> list[Any]:
    """Run the hand-off function on what the webhook queued since the last drain (as Lambda does it: one
    asynchronous invocation per message); returns each message's result or the exception it raised."""
    results: list[Any] = []
    start = getattr(outbox, "drained_upto", 0)
    messages = list(outbox.messages)
    for message in messages[start:]:
        event = json.loads(json.dumps(message.event(), ensure_ascii=False))  # as the invocation carries it
        try:
            results.append(handoff_app.handle_message(event))
        except Exception as exc:  # what would fail the invocation (Lambda retries it)
            results.append(exc)
    outbox.drained_upto = len(messages)
    return results
