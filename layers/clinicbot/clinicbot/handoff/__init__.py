"""Hand-off to humans and to the clinic's CRM: what the bot puts on the hand-off queue."""

from clinicbot.handoff.outbox import InMemoryOutbox, Outbox, OutboxMessage, SqsOutbox, outbox_from_env

__all__ = ["InMemoryOutbox", "Outbox", "OutboxMessage", "SqsOutbox", "outbox_from_env"]
