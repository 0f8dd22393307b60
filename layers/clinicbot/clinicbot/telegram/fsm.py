"""aiogram FSM storage on the StateTable, served from the per-update :class:`StateUnit`."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

from clinicbot.storage.unit import DialogueKey, StateUnit

current_unit: ContextVar[StateUnit | None] = ContextVar("clinicbot_state_unit", default=None)


def dialogue_key(key: StorageKey) -> DialogueKey:
    return DialogueKey(
        bot_id=key.bot_id,
        chat_id=key.chat_id,
        user_id=key.user_id,
        thread_id=key.thread_id,
        business_connection_id=key.business_connection_id,
        destiny=key.destiny,
    )


class DynamoStorage(BaseStorage):
    """State and data of a dialogue live in one DynamoDB item; reads and writes go through the unit of
    work of the update being handled, which reads the partition once and writes once at the end.

    Outside an update (a script, a test) each call opens and flushes a unit of its own.
    """

    def __init__(self, *, dialogue_ttl_seconds: int) -> None:
        self._ttl = dialogue_ttl_seconds

    def _unit(self) -> tuple[StateUnit, bool]:
        unit = current_unit.get()
        if unit is not None:
            return unit, False
        return StateUnit(dialogue_ttl_seconds=self._ttl), True

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        unit, own = self._unit()
        unit.set_state(dialogue_key(key), state.state if isinstance(state, State) else state)
        if own:
            unit.flush()

    async def get_state(self, key: StorageKey) -> str | None:
        unit, _ = self._unit()
        return unit.get_state(dialogue_key(key))

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        unit, own = self._unit()
        unit.set_data(dialogue_key(key), dict(data))
        if own:
            unit.flush()

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        unit, _ = self._unit()
        return unit.get_data(dialogue_key(key))

    async def close(self) -> None:
        return None
