"""With TELEGRAM_BOT_TOKEN set the local run long-polls Telegram and feeds the same handler: shown here
against the loopback Bot API's getUpdates."""

from __future__ import annotations

from typing import Any

from tests.harness import SECRET, TgUser, WebhookHarness, message_update


def test_long_polling_feeds_the_webhook_handler(webhook: WebhookHarness, botapi: Any) -> None:
    from clinicbot.local.chat import poll_real_telegram

    user = TgUser(id=6001)
    botapi.push_update(message_update(user, "/start"))
    botapi.push_update(message_update(user, "/help"))
    handled = poll_real_telegram(
        lambda event, _context: webhook.app.handle_event(event),
        token=botapi.token,
        secret=SECRET,
        api_base=botapi.base_url,
        poll_timeout=1,
        max_updates=2,
    )
    assert handled == 2
    assert botapi.calls_of("deleteWebhook")
    texts = [c.params.get("text", "") for c in botapi.calls_of("sendMessage")]
    assert any("Здравствуйте" in t for t in texts)
    assert any("/start — начать заново" in t for t in texts)
