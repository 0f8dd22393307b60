"""A terminal chat that stands in for the Telegram app.

Every message you type becomes a Telegram update, wrapped in the API Gateway event the webhook function
receives in AWS (same shape, same secret header) and handed to ``functions/webhook/app.py``'s handler.
A Bot API method returned in the webhook response is executed the way Telegram executes it. What the bot
says (messages, edits, button answers) is printed with its buttons numbered: type the number to press
one. With ``TELEGRAM_BOT_TOKEN`` set, the same handler long-polls real Telegram instead.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

HELP = """Type a message and press Enter. Type a button's number to press it.
  :contact [phone]   share your own contact (like the "share phone" button)
  :foreign <phone>   share someone else's contact (the bot must refuse it)
  :lang ru|en        change the language your Telegram app reports
  :help              this help        :quit   leave
"""


@dataclass
class Button:
    label: str
    callback_data: str | None = None
    request_contact: bool = False
    url: str | None = None
    message_id: int | None = None


@dataclass
class ChatUser:
    id: int = 700000001
    first_name: str = "Мария"
    last_name: str = "Петрова"
    language_code: str = "ru"
    phone: str = "+7 916 000-11-22"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "language_code": self.language_code,
        }

    def chat(self) -> dict[str, Any]:
        return {"id": self.id, "type": "private", "first_name": self.first_name, "last_name": self.last_name}


def api_gateway_event(update: dict[str, Any], secret: str) -> dict[str, Any]:
    """The event a Lambda function URL (payload 2.0, as an HTTP API's) builds for Telegram's POST."""
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/telegram/webhook",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": "localhost",
            "x-telegram-bot-api-secret-token": secret,
        },
        "requestContext": {
            "http": {
                "method": "POST",
                "path": "/telegram/webhook",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "",
            },
            "routeKey": "$default",
            "stage": "$default",
            "requestId": f"local-{update.get('update_id')}",
            "timeEpoch": int(now * 1000),
        },
        "body": json.dumps(update, ensure_ascii=False),
        "isBase64Encoded": False,
    }


def execute_response(response: dict[str, Any], api_url: str) -> dict[str, Any] | None:
    """Do what Telegram does with a webhook response that carries a method: call it."""
    if response.get("statusCode") != 200 or not response.get("body"):
        return None
    body = json.loads(response["body"])
    method = body.pop("method", None)
    if not method:
        return None
    request = urllib.request.Request(
        f"{api_url}/{method}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        result: dict[str, Any] = json.loads(reply.read())
        return result


def _plain(text: str) -> str:
    text = re.sub(r'<a href="([^"]+)">([^<]*)</a>', r"\2 (\1)", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


@dataclass
class TerminalChat:
    """Drives the webhook handler from a terminal (or a script piped into stdin)."""

    handler: Callable[[dict[str, Any], Any], dict[str, Any]]
    botapi: Any  # FakeBotAPI
    secret: str
    user: ChatUser = field(default_factory=ChatUser)
    out: TextIO = sys.stdout
    buttons: list[Button] = field(default_factory=list)
    _update_ids: Any = field(default_factory=lambda: itertools.count(1))
    _message_ids: Any = field(default_factory=lambda: itertools.count(1))

    # ------------------------------------------------------------------ sending
    def _deliver(self, update: dict[str, Any]) -> None:
        from clinicbot.local.lambda_runner import LambdaContext

        start = len(self.botapi.calls)
        response = self.handler(api_gateway_event(update, self.secret), LambdaContext("clinicbot-webhook"))
        if response.get("statusCode") != 200:
            self.say(f"[webhook answered HTTP {response.get('statusCode')}: {response.get('body')}]")
        execute_response(response, self.botapi.api_url)
        for call in self.botapi.calls[start:]:
            self.show(call.method, call.params, call.result if call.ok else None)

    def _message(self, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.user.chat(),
            "from": self.user.as_dict(),
            **content,
        }
        return {"update_id": next(self._update_ids), "message": message}

    def send_text(self, text: str) -> None:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        self._deliver(self._message(**content))

    def share_contact(self, phone: str | None = None, *, owner_id: int | None = None) -> None:
        contact = {
            "phone_number": phone or self.user.phone,
            "first_name": self.user.first_name,
            "last_name": self.user.last_name,
            "user_id": self.user.id if owner_id is None else owner_id,
        }
        self._deliver(self._message(contact=contact))

    def press(self, number: int) -> None:
        if not 1 <= number <= len(self.buttons):
            self.say("[no such button]")
            return
        button = self.buttons[number - 1]
        if button.request_contact:
            self.share_contact()
        elif button.callback_data is not None:
            update = {
                "update_id": next(self._update_ids),
                "callback_query": {
                    "id": str(time.time_ns()),
                    "from": self.user.as_dict(),
                    "chat_instance": "local",
                    "data": button.callback_data,
                    "message": {
                        "message_id": button.message_id or 1,
                        "date": int(time.time()),
                        "chat": self.user.chat(),
                        "from": {"id": 1, "is_bot": True, "first_name": "ClinicBot"},
                        "text": "…",
                    },
                },
            }
            self._deliver(update)
        elif button.url:
            self.say(f"[opens {button.url}]")
        else:
            self.send_text(button.label)

    # ------------------------------------------------------------------ showing
    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def show(self, method: str, params: dict[str, Any], result: Any) -> None:
        if method in {"sendMessage", "editMessageText", "sendPhoto", "sendDocument", "sendVenue"}:
            text = params.get("text") or params.get("caption") or params.get("title") or ""
            mark = "✎ " if method == "editMessageText" else ""
            self.say(f"\n🤖 {mark}{_plain(str(text))}")
            if method == "sendVenue":
                self.say(
                    f"   📍 {params.get('address')} ({params.get('latitude')}, {params.get('longitude')})"
                )
            message_id = result.get("message_id") if isinstance(result, dict) else params.get("message_id")
            self._buttons_from(params.get("reply_markup"), message_id)
        elif method == "editMessageReplyMarkup":
            self._buttons_from(params.get("reply_markup"), params.get("message_id"))
        elif method == "answerCallbackQuery" and params.get("text"):
            self.say(f"   💬 {params['text']}")

    def _buttons_from(self, markup: Any, message_id: Any) -> None:
        if isinstance(markup, str):
            markup = json.loads(markup)
        if not markup:
            return
        if markup.get("remove_keyboard"):
            self.buttons = [b for b in self.buttons if b.callback_data is not None]
            return
        rows = markup.get("inline_keyboard") or markup.get("keyboard") or []
        inline = "inline_keyboard" in markup
        self.buttons = []
        for row in rows:
            labels = []
            for raw in row:
                self.buttons.append(
                    Button(
                        label=raw.get("text", ""),
                        callback_data=raw.get("callback_data"),
                        request_contact=bool(raw.get("request_contact")),
                        url=raw.get("url"),
                        message_id=int(message_id) if inline and message_id is not None else None,
                    )
                )
                labels.append(f"[{len(self.buttons)}] {raw.get('text', '')}")
            self.say("   " + "   ".join(labels))

    # ------------------------------------------------------------------ loop
    def run(self, lines: TextIO = sys.stdin) -> None:
        self.say(HELP)
        interactive = lines.isatty()
        while True:
            if interactive:
                print("\n> ", end="", file=self.out, flush=True)
            line = lines.readline()
            if not line:
                return
            line = line.strip()
            if not line:
                continue
            if not interactive:
                self.say(f"\n> {line}")
            if not self.handle_line(line):
                return

    def handle_line(self, line: str) -> bool:
        if line in {":quit", ":q", ":exit"}:
            return False
        if line == ":help":
            self.say(HELP)
        elif line.startswith(":contact"):
            phone = line.removeprefix(":contact").strip() or None
            self.share_contact(phone)
        elif line.startswith(":foreign"):
            self.share_contact(
                line.removeprefix(":foreign").strip() or "+7 903 555-00-00", owner_id=555000999
            )
        elif line.startswith(":lang"):
            self.user.language_code = line.removeprefix(":lang").strip() or "ru"
            self.say(f"[your Telegram now reports language {self.user.language_code}]")
        elif line.isdigit() and self.buttons:
            self.press(int(line))
        else:
            self.send_text(line)
        return True


def poll_real_telegram(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    token: str,
    secret: str,
    api_base: str = "https://api.telegram.org",
    *,
    poll_timeout: int = 25,
    max_updates: int | None = None,
) -> int:
    """Long-poll Telegram (``TELEGRAM_BOT_TOKEN`` set) and feed each update to the same handler, wrapped in the
    same API Gateway event; the method a response carries is executed like Telegram would. Returns the number
    of updates handled (``max_updates`` stops the loop: tests)."""
    from clinicbot.local.lambda_runner import LambdaContext

    api_url = f"{api_base}/bot{token}"
    urllib.request.urlopen(f"{api_url}/deleteWebhook", timeout=10).read()
    offset, handled = 0, 0
    print("Long-polling Telegram; write to your bot. Ctrl+C to stop.", flush=True)
    while max_updates is None or handled < max_updates:
        with urllib.request.urlopen(
            f"{api_url}/getUpdates?timeout={poll_timeout}&offset={offset}", timeout=poll_timeout + 10
        ) as reply:
            updates = json.loads(reply.read()).get("result", [])
        for update in updates:
            offset = update["update_id"] + 1
            response = handler(api_gateway_event(update, secret), LambdaContext("clinicbot-webhook"))
            execute_response(response, api_url)
            handled += 1
    return handled
