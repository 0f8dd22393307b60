"""Callback data of the hand-off dialogues (call back, tax certificate, write to the clinic) and of the
staff group's request cards. aiogram ``CallbackData``, 64 bytes at most; anything that does not parse
falls through to the stale-button fallback. Hand-off buttons act only in their own FSM state."""

from __future__ import annotations

from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from clinicbot.handoff.texts import CARD_PREFIX

__all__ = ["CardCb", "HandoffCb"]


class HandoffCb(CallbackData, prefix="ho"):
    """``a``: ph (phone: card/new), win (window), top (topic), yr (toggle a year), yrok, rel (relation),
    send, back, cancel, end (leave the conversation with the clinic)."""

    a: Literal["ph", "win", "top", "yr", "yrok", "rel", "send", "back", "cancel", "end"]
    v: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{0,16}$")] = ""


class CardCb(CallbackData, prefix=CARD_PREFIX):
    """A request card's buttons in the staff group: take, took (taken by ``by``), done, closed."""

    action: Literal["take", "took", "done", "closed"]
    number: Annotated[str, Field(pattern=r"^[0-9]{1,12}$")]
    by: int = 0
