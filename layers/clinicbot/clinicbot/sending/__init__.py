"""Sending many Telegram messages within the rate limits (reminders, broadcasts)."""

from clinicbot.sending.sender import BotApi, BulkSender, Outcome, OutgoingMessage, SendReport, SendStatus

__all__ = ["BotApi", "BulkSender", "Outcome", "OutgoingMessage", "SendReport", "SendStatus"]
