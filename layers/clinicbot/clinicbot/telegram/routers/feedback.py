"""Visit feedback: a 1-5 rating (the post-visit survey's buttons), "what could be better" (five options to
tick, an optional comment), sent named or anonymous; then, at most once every N months, the NPS question
(0-10, inline buttons). A low rating reaches the staff as a hand-off (outbox kind ``low_rating``).

The dialogue edits the survey message in place. The FSM data holds the draft (ids, the score, the ticks,
the comment) and a random flow id, which becomes an anonymous answer's id: a retried update stores it once.

DynamoDB: each step 1 read + 1 write (the dialogue); sending the rating and the NPS answer add one PutItem
each to the FeedbackTable.
"""

from __future__ import annotations

import html
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from clinicbot.booking.refs import resolve
from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.engagement.feedback import (
    IMPROVEMENTS,
    LOW_RATING_KIND,
    MAX_COMMENT,
    Entry,
    EntryKind,
    month_of,
    nps_due,
)
from clinicbot.engagement.survey import FbAction
from clinicbot.handoff.outbox import InMemoryOutbox, Outbox
from clinicbot.i18n import Translator
from clinicbot.mis.models import AppointmentStatus, Branch
from clinicbot.mis.port import MisPort
from clinicbot.storage.unit import StateUnit
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.routers.account import LinkedPatientGate

__all__ = ["FeedbackCb", "FeedbackSG", "build_router"]

log = logging.getLogger(__name__)

Reply = Any
NOT_RATEABLE = frozenset({AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW})


class FeedbackCb(CallbackData, prefix="fb"):
    """The strings of ``clinicbot.engagement.survey.pack``."""

    a: str
    v: str
    n: int


class FeedbackSG(StatesGroup):
    details = State()
    comment = State()
    nps = State()


def _cb(action: FbAction, ref: str, n: int = 0) -> str:
    return FeedbackCb(a=action.value, v=ref, n=n).pack()


def details_screen(t: Translator, draft: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    ref = draft["v"]
    ticked = set(draft.get("i") or [])
    lines = [t("feedback.rated", score=draft["r"]), "", t("feedback.improve_title")]
    if draft.get("c"):
        lines += ["", t("feedback.your_comment", comment=html.escape(draft["c"]))]
    rows = [
        [
            InlineKeyboardButton(
                text=("✅ " if index in ticked else "▫️ ") + t(f"feedback.imp.{key}"),
                callback_data=_cb(FbAction.IMPROVE, ref, index),
            )
        ]
        for index, key in enumerate(IMPROVEMENTS)
    ]
    comment_label = t("feedback.comment_edit") if draft.get("c") else t("feedback.comment_add")
    rows.append([InlineKeyboardButton(text=comment_label, callback_data=_cb(FbAction.COMMENT, ref))])
    rows.append(
        [
            InlineKeyboardButton(text=t("feedback.send"), callback_data=_cb(FbAction.SEND, ref, 0)),
            InlineKeyboardButton(text=t("feedback.send_anonymous"), callback_data=_cb(FbAction.SEND, ref, 1)),
        ]
    )
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)


def nps_keyboard(t: Translator, ref: str) -> InlineKeyboardMarkup:
    def button(n: int) -> InlineKeyboardButton:
        return InlineKeyboardButton(text=str(n), callback_data=_cb(FbAction.NPS, ref, n))

    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(n) for n in range(0, 6)],
            [button(n) for n in range(6, 11)],
            [InlineKeyboardButton(text=t("feedback.nps_skip"), callback_data=_cb(FbAction.NPS, ref, -1))],
        ]
    )


def menu_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=t("booking.to_menu"), callback_data=MenuCb(action="main").pack())]
        ]
    )


def show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> Reply:
    if isinstance(query.message, Message):
        return query.message.edit_text(text, reply_markup=markup)
    return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)


async def current_draft(state: FSMContext, ref: str, *states: State) -> dict[str, Any] | None:
    """The draft if the button belongs to the feedback in progress (at one of ``states``), else None."""
    current = await state.get_state()
    if current not in {s.state for s in states}:
        return None
    draft = (await state.get_data()).get("fb")
    return draft if isinstance(draft, dict) and draft.get("v") == ref else None


def _repository(data: dict[str, Any], settings: Settings) -> Any:
    repo = data.get("feedback_repository")
    if repo is not None:
        return repo
    from clinicbot.engagement.feedback_store import FeedbackItem, FeedbackRepository, configure

    if getattr(FeedbackItem.Meta, "table_name", None) != settings.feedback_table:
        configure(
            table_name=settings.feedback_table,
            connect_timeout=settings.ddb_connect_timeout_seconds,
            read_timeout=settings.ddb_read_timeout_seconds,
            max_retries=settings.ddb_max_retries,
        )
    return FeedbackRepository()


def build_router() -> Router:
    router = Router(name="feedback")
    router.callback_query.middleware(LinkedPatientGate())

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.RATE.value))
    async def rate(
        query: CallbackQuery,
        callback_data: FeedbackCb,
        state: FSMContext,
        t: Translator,
        mis: MisPort,
        patient_id: str,
    ) -> Reply:
        if not 1 <= callback_data.n <= 5:
            return query.answer(t("feedback.gone"), show_alert=True)
        visits = await mis.visits(patient_id)
        visit = resolve(callback_data.v, visits.past, key=lambda a: a.id)
        if visit is None or visit.status in NOT_RATEABLE:
            return query.answer(t("feedback.gone"), show_alert=True)
        branches: dict[str, Branch] = {b.id: b for b in await mis.branches()}
        branch = branches.get(visit.branch_id)
        draft = {
            "f": secrets.token_hex(8),
            "v": callback_data.v,
            "a": visit.id,
            "d": visit.doctor_id,
            "b": visit.branch_id,
            "m": month_of(visit.start, branch.timezone if branch else None),
            "r": callback_data.n,
            "i": [],
            "c": None,
        }
        await state.set_state(FeedbackSG.details)
        await state.update_data(fb=draft)
        await query.answer()
        text, markup = details_screen(t, draft)
        return show(query, text, markup)

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.IMPROVE.value))
    async def improve(
        query: CallbackQuery, callback_data: FeedbackCb, state: FSMContext, t: Translator
    ) -> Reply:
        draft = await current_draft(state, callback_data.v, FeedbackSG.details)
        if draft is None or not 0 <= callback_data.n < len(IMPROVEMENTS):
            return query.answer(t("feedback.gone"), show_alert=True)
        ticked = set(draft.get("i") or [])
        ticked ^= {callback_data.n}
        draft["i"] = sorted(ticked)
        await state.update_data(fb=draft)
        await query.answer()
        text, markup = details_screen(t, draft)
        return show(query, text, markup)

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.COMMENT.value))
    async def comment(
        query: CallbackQuery, callback_data: FeedbackCb, state: FSMContext, t: Translator
    ) -> Reply:
        draft = await current_draft(state, callback_data.v, FeedbackSG.details)
        if draft is None:
            return query.answer(t("feedback.gone"), show_alert=True)
        await state.set_state(FeedbackSG.comment)
        await query.answer()
        markup = InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text=t("feedback.back"), callback_data=_cb(FbAction.BACK, draft["v"]))]
            ]
        )
        return show(query, t("feedback.comment_prompt", limit=MAX_COMMENT), markup)

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.BACK.value))
    async def back(
        query: CallbackQuery, callback_data: FeedbackCb, state: FSMContext, t: Translator
    ) -> Reply:
        draft = await current_draft(state, callback_data.v, FeedbackSG.comment, FeedbackSG.details)
        if draft is None:
            return query.answer(t("feedback.gone"), show_alert=True)
        await state.set_state(FeedbackSG.details)
        await query.answer()
        text, markup = details_screen(t, draft)
        return show(query, text, markup)

    @router.message(StateFilter(FeedbackSG.comment), F.chat.type == "private")
    async def comment_text(message: Message, state: FSMContext, t: Translator) -> Reply:
        draft = (await state.get_data()).get("fb")
        if not isinstance(draft, dict):
            await state.clear()
            return message.answer(t("feedback.gone"))
        if not message.text or message.text.startswith("/"):
            return message.answer(t("feedback.comment_text_only"))
        draft["c"] = message.text.strip()[:MAX_COMMENT]
        await state.set_state(FeedbackSG.details)
        await state.update_data(fb=draft)
        text, markup = details_screen(t, draft)
        return message.answer(text, reply_markup=markup)

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.SEND.value))
    async def send(
        query: CallbackQuery,
        callback_data: FeedbackCb,
        state: FSMContext,
        card: PatientCard,
        unit: StateUnit,
        t: Translator,
        settings: Settings,
        patient_id: str,
        **data: Any,
    ) -> Reply:
        draft = await current_draft(state, callback_data.v, FeedbackSG.details)
        if draft is None:
            return query.answer(t("feedback.gone"), show_alert=True)
        anonymous = callback_data.n == 1
        now = datetime.now(UTC)
        entry = Entry(
            kind=EntryKind.RATING,
            month=draft["m"],
            clinic=settings.clinic_name,
            branch_id=draft["b"],
            doctor_id=draft["d"],
            score=int(draft["r"]),
            anonymous=anonymous,
            improvements=tuple(IMPROVEMENTS[i] for i in draft.get("i") or []),
            comment=draft.get("c") or None,
            owner=None if anonymous else query.from_user.id,
            patient_id=None if anonymous else patient_id,
            appointment_id=None if anonymous else draft["a"],
            created_at=None if anonymous else now,
            entry_id=draft["f"] if anonymous else Entry.named_id(EntryKind.RATING, draft["a"]),
        )
        stored = _repository(data, settings).save(entry)
        if entry.score <= settings.low_rating_max:
            _hand_off(data.get("outbox") or InMemoryOutbox(), entry)
        thanks = t("feedback.thanks") if stored else t("feedback.already")
        if nps_due(card.nps_asked_at, now, settings.nps_interval_months):
            unit.save_card(query.from_user.id, nps_asked_at=now)
            await state.set_state(FeedbackSG.nps)
            # a fresh random id: an anonymous NPS answer is not linkable even to the anonymous rating
            await state.set_data({"fb": {**draft, "anon": anonymous, "f": secrets.token_hex(8)}})
            await query.answer()
            return show(query, thanks + "\n\n" + t("feedback.nps_question"), nps_keyboard(t, draft["v"]))
        await state.clear()
        await query.answer()
        return show(query, thanks, menu_keyboard(t))

    @router.callback_query(FeedbackCb.filter(F.a == FbAction.NPS.value))
    async def nps(
        query: CallbackQuery,
        callback_data: FeedbackCb,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        patient_id: str,
        **data: Any,
    ) -> Reply:
        draft = await current_draft(state, callback_data.v, FeedbackSG.nps)
        if draft is None or not -1 <= callback_data.n <= 10:
            return query.answer(t("feedback.gone"), show_alert=True)
        await state.clear()
        if callback_data.n >= 0:
            anonymous = bool(draft.get("anon"))
            _repository(data, settings).save(
                Entry(
                    kind=EntryKind.NPS,
                    month=draft["m"],
                    clinic=settings.clinic_name,
                    branch_id=draft["b"],
                    doctor_id=draft["d"],
                    score=callback_data.n,
                    anonymous=anonymous,
                    owner=None if anonymous else query.from_user.id,
                    patient_id=None if anonymous else patient_id,
                    appointment_id=None if anonymous else draft["a"],
                    created_at=None if anonymous else datetime.now(UTC),
                    entry_id=draft["f"] if anonymous else Entry.named_id(EntryKind.NPS, draft["a"]),
                )
            )
        await query.answer()
        return show(query, t("feedback.nps_thanks"), menu_keyboard(t))

    return router


def _hand_off(outbox: Outbox, entry: Entry) -> None:
    """A low rating for the staff: ids and ticks only (a comment is free text: it stays in the table)."""
    payload: dict[str, Any] = {
        "score": entry.score,
        "improvements": list(entry.improvements),
        "doctor_id": entry.doctor_id,
        "branch_id": entry.branch_id,
        "month": entry.month,
        "anonymous": entry.anonymous,
        "has_comment": bool(entry.comment),
        "feedback_id": f"{entry.month}/{entry.entry_id}",
    }
    if not entry.anonymous:
        payload["patient_id"] = entry.patient_id
        payload["appointment_id"] = entry.appointment_id
        payload["telegram_user_id"] = entry.owner
    try:
        outbox.publish(LOW_RATING_KIND, payload, f"{LOW_RATING_KIND}:{entry.entry_id}")
    except Exception:  # the answer is stored; the staff notice is not worth failing the patient's step
        log.exception("could not hand off a low rating")
