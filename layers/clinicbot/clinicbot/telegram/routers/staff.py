"""The staff Telegram supergroup (``crm_provider=telegram_group``): replies and card buttons.

Updates from the staff group come to the same webhook as patients' (the bot is an admin of the group, so
it sees every message in the forum topics). Only the configured group is listened to, and only its
members act: a message or a button press is checked with ``getChatMember`` (cached for a few minutes per
warm container; an anonymous admin, who posts as the group itself, is a member by definition).

* A staff member's message in a patient's topic goes on the hand-off queue as a reference (group, message
  id, patient): the hand-off function copies it to the patient with ``protect_content`` and retries on
  Telegram errors; a patient who blocked the bot gets a note in the topic. Messages starting with ``//``
  are internal notes and stay in the group; so do messages outside a patient's topic.
* Card buttons: "take" marks who took the request, "done" closes it; a second staff member pressing
  "take" is told who has it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, ReactionTypeEmoji, TelegramObject
from aiogram.utils.keyboard import InlineKeyboardBuilder

from clinicbot.config import Settings
from clinicbot.handoff.crm_telegram_group import channel_of
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.outbox import InMemoryOutbox
from clinicbot.handoff.requests import StaffReply
from clinicbot.handoff.store import DynamoHandoffStore, HandoffStore
from clinicbot.i18n import Translator
from clinicbot.telegram.handoff_callbacks import CardCb

__all__ = ["MembershipCache", "build_router"]

log = logging.getLogger(__name__)

MEMBER_STATUSES = frozenset({"creator", "administrator", "member"})
INTERNAL_PREFIX = "//"
_SERVICE_FIELDS = (
    "forum_topic_created",
    "forum_topic_edited",
    "forum_topic_closed",
    "forum_topic_reopened",
    "new_chat_members",
    "left_chat_member",
    "pinned_message",
    "general_forum_topic_hidden",
    "general_forum_topic_unhidden",
)


class MembershipCache:
    """``getChatMember`` answers, kept ``ttl`` seconds (members only: a refusal is asked again)."""

    def __init__(self, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._members: dict[tuple[int, int], float] = {}

    async def is_member(self, bot: Bot, group_id: int, user_id: int) -> bool:
        now = self._clock()
        if self._members.get((group_id, user_id), 0.0) > now:
            return True
        try:
            member = await bot.get_chat_member(chat_id=group_id, user_id=user_id)
        except TelegramAPIError as exc:
            log.warning(
                "getChatMember failed: treating the sender as a non-member", extra={"error": str(exc)}
            )
            return False
        status = str(getattr(member, "status", ""))
        ok = status in MEMBER_STATUSES or (
            status == "restricted" and bool(getattr(member, "is_member", False))
        )
        if ok:
            self._members[(group_id, user_id)] = now + self._ttl
        return ok


class StaffContext(BaseMiddleware):
    """Only the configured staff group; puts ``desk``, ``store``, ``staff_t`` (the clinic's language) and
    ``is_member`` (the sender's membership, already checked) into handler data."""

    def __init__(self, cache: MembershipCache) -> None:
        self._cache = cache
        self._store: HandoffStore | None = None

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        settings: Settings = data["settings"]
        store: HandoffStore | None = data.get("handoff_store")
        if store is None:
            if self._store is None:
                self._store = DynamoHandoffStore(settings.handoff_table)
            store = self._store
        data["store"] = store
        data["desk"] = HandoffDesk(store, data.get("outbox") or InMemoryOutbox())
        data["staff_t"] = Translator(settings.default_language)
        group_id = settings.staff_group_id
        if group_id is None:
            data["is_member"] = False  # no staff group configured: nobody acts as staff
        elif (
            isinstance(event, Message) and event.sender_chat is not None and event.sender_chat.id == group_id
        ):
            data["is_member"] = True  # an anonymous admin posts as the group
        else:
            user = data.get("event_from_user")
            bot: Bot = data["bot"]
            data["is_member"] = user is not None and await self._cache.is_member(bot, group_id, user.id)
        return await handler(event, data)


def _in_staff_group(chat_id: int, settings: Settings) -> bool:
    return settings.staff_group_id is not None and chat_id == settings.staff_group_id


def _who(query: CallbackQuery) -> str:
    user = query.from_user
    return user.first_name + (f" {user.last_name[:1]}." if user.last_name else "")


def card_markup(
    t: Translator, number: str, *, taken_by: tuple[int, str] | None, done: bool
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if done and taken_by is not None:
        builder.button(
            text=t("handoff.card.closed", who=taken_by[1]),
            callback_data=CardCb(action="closed", number=number, by=taken_by[0]),
        )
        return builder.as_markup()
    if taken_by is None:
        builder.button(text=t("handoff.card.take"), callback_data=CardCb(action="take", number=number))
    else:
        builder.button(
            text=t("handoff.card.taken", who=taken_by[1]),
            callback_data=CardCb(action="took", number=number, by=taken_by[0]),
        )
    builder.button(text=t("handoff.card.done"), callback_data=CardCb(action="done", number=number))
    return builder.as_markup()


def _taker(query: CallbackQuery) -> tuple[int, str] | None:
    """Who took the card, read back from the card's own buttons (the card is the state)."""
    if not isinstance(query.message, Message) or query.message.reply_markup is None:
        return None
    for row in query.message.reply_markup.inline_keyboard:
        for button in row:
            if button.callback_data and button.callback_data.startswith(f"{CardCb.__prefix__}:took:"):
                parsed = CardCb.unpack(button.callback_data)
                name = button.text.split(":", 1)[-1].strip()
                return parsed.by, name
    return None


def build_router(cache: MembershipCache | None = None) -> Router:
    router = Router(name="staff")
    context = StaffContext(cache or MembershipCache())
    router.message.filter(F.chat.type == "supergroup")
    router.message.middleware(context)  # inner: filters run first, so other chats cost nothing
    router.callback_query.middleware(context)

    async def staff_chat(message: Message, settings: Settings) -> bool:
        return _in_staff_group(message.chat.id, settings)

    @router.message(staff_chat)
    async def staff_message(
        message: Message,
        settings: Settings,
        store: HandoffStore,
        desk: HandoffDesk,
        staff_t: Translator,
        is_member: bool,
    ) -> Any:
        user = message.from_user
        if (user is not None and user.is_bot and message.sender_chat is None) or any(
            getattr(message, name, None) for name in _SERVICE_FIELDS
        ):
            return None
        if not message.is_topic_message or message.message_thread_id is None:
            return None  # the General topic: staff talk among themselves
        text = message.text or message.caption or ""
        if text.startswith(INTERNAL_PREFIX):
            return None
        group_id = message.chat.id
        patient = store.user_of_thread(channel_of(group_id), str(message.message_thread_id))
        if patient is None:
            return None  # not a patient's topic
        if not is_member:
            log.warning("a message in a patient's topic from a non-member was not relayed")
            return message.answer(staff_t("handoff.staff.not_member"))
        try:
            desk.staff_reply(
                StaffReply(
                    group_id=group_id,
                    thread_id=message.message_thread_id,
                    message_id=message.message_id,
                    user_id=patient,
                )
            )
        except Exception:
            log.exception("could not queue a staff reply")
            return message.reply(staff_t("handoff.staff.failed"))
        return message.react([ReactionTypeEmoji(emoji="👀")])  # queued; 👌 once the patient has it

    @router.callback_query(CardCb.filter())
    async def card_button(
        query: CallbackQuery, callback_data: CardCb, settings: Settings, staff_t: Translator, is_member: bool
    ) -> Any:
        message = query.message
        if (
            not isinstance(message, Message)
            or not _in_staff_group(message.chat.id, settings)
            or not is_member
        ):
            log.warning("a request card button pressed by someone outside the staff group")
            return query.answer(staff_t("handoff.staff.not_member"), show_alert=True)
        taker = _taker(query)
        me = (query.from_user.id, _who(query))
        number = callback_data.number
        if callback_data.action == "closed":
            return query.answer(staff_t("handoff.card.already_closed"))
        if callback_data.action in ("take", "took"):
            if taker is not None and taker[0] != me[0]:
                return query.answer(staff_t("handoff.card.already_taken", who=taker[1]), show_alert=True)
            if taker is not None:
                return query.answer(staff_t("handoff.card.yours"))
            await query.answer(staff_t("handoff.card.taken_ok"))
            return message.edit_reply_markup(
                reply_markup=card_markup(staff_t, number, taken_by=me, done=False)
            )
        # done
        await query.answer(staff_t("handoff.card.closed_ok"))
        return message.edit_reply_markup(
            reply_markup=card_markup(staff_t, number, taken_by=taker or me, done=True)
        )

    return router
