"""Hand-off to humans and to the clinic's CRM: what the bot hands to the hand-off function."""

from clinicbot.handoff.outbox import InMemoryOutbox, LambdaOutbox, Outbox, OutboxMessage, outbox_from_env

__all__ = ["InMemoryOutbox", "LambdaOutbox", "Outbox", "OutboxMessage", "outbox_from_env"]
