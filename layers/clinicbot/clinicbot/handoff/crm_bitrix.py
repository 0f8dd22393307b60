"""CRM adapter: a Bitrix24 incoming webhook (``https://<portal>/rest/<user>/<code>/``, a secret URL).

* call-backs and certificate requests -> ``crm.lead.add`` (TITLE with the request number, the patient's
  NAME / LAST_NAME, PHONE for a call-back only, COMMENTS with the details; ``ORIGINATOR_ID=clinicbot`` and
  ``ORIGIN_ID=<hash of the idempotency key>`` mark it as ours);
* patient messages, booking copies and notices -> ``crm.timeline.comment.add`` on the patient's lead
  (``ORIGIN_ID=patient:<MIS id>``, created on first need and remembered in the HandoffTable);
  a patient's file goes along in the comment's ``FILES``.

``crm.lead.add`` is not idempotent: when a message may have reached Bitrix before (a redelivery, or a
timeout / 5xx of our own earlier attempt, when the lead may exist), ``crm.lead.list`` by ``ORIGIN_ID``
comes first. Bitrix's leaky bucket (50 requests, 2 per second) answers 503 ``QUERY_LIMIT_EXCEEDED``
beyond it: that call was not executed, so it is retried with exponential backoff (0.5 s, 1 s, 2 s, with
jitter). Other 5xx and timeouts: retried likewise, then :class:`CrmUnavailable`. 4xx: :class:`CrmRejected`.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from typing import Any

import aiohttp

from clinicbot.domain.phones import normalize_phone
from clinicbot.handoff.port import CrmRejected, CrmUnavailable, Delivery, DeliveryContext
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import RetryPolicy, retrying
from clinicbot.handoff.store import HandoffStore, ref_of
from clinicbot.handoff.texts import booking_text, callback_text, certificate_text, generic_text, notice_text
from clinicbot.i18n import Translator

__all__ = ["CHANNEL", "BitrixCrm", "BitrixError"]

log = logging.getLogger(__name__)

BITRIX_RETRY = RetryPolicy(attempts=4, base=0.5, cap=4.0, max_wait=10.0)

CHANNEL = "bitrix"
ORIGINATOR = "clinicbot"


class BitrixError(CrmUnavailable):
    """A retryable Bitrix answer; ``code`` is Bitrix's error code (e.g. QUERY_LIMIT_EXCEEDED)."""

    def __init__(
        self, message: str, code: str, *, executed_maybe: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code
        self.executed_maybe = executed_maybe


def _plain(text: str) -> str:
    """Bitrix comments are BB-code, not HTML: drop the tags the shared card texts carry."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))


class BitrixCrm:
    name = "bitrix24"

    def __init__(
        self,
        base_url: str,
        store: HandoffStore,
        *,
        language: str = "ru",
        timezone: str = "Europe/Moscow",
        timeout: float = 5.0,
        policy: RetryPolicy = BITRIX_RETRY,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError("the Bitrix24 webhook URL must be http(s)")
        self._base = base_url.rstrip("/")
        self._store = store
        self._t = Translator(language)
        self._tz = timezone
        self._timeout = timeout
        self._policy = policy
        self._session: aiohttp.ClientSession | None = None
        self.calls: list[str] = []  # method names only, for tests and metrics

    def __repr__(self) -> str:
        return "BitrixCrm(url=<secret>)"

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    # ------------------------------------------------------------------ transport
    async def _once(self, method: str, params: dict[str, Any], ctx: DeliveryContext) -> Any:
        self.calls.append(method)
        timeout = aiohttp.ClientTimeout(total=ctx.deadline.timeout(self._timeout))
        try:
            async with self._http().post(f"{self._base}/{method}.json", json=params, timeout=timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise BitrixError(f"{method}: cannot connect", "CONNECT", executed_maybe=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BitrixError(f"{method}: {type(exc).__name__}", "TIMEOUT", executed_maybe=True) from exc
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        code = str(body.get("error") or "") if isinstance(body, dict) else ""
        if status == 200 and isinstance(body, dict) and "result" in body and not code:
            return body["result"]
        if code == "QUERY_LIMIT_EXCEEDED" or status == 429:
            raise BitrixError(f"{method}: QUERY_LIMIT_EXCEEDED", "QUERY_LIMIT_EXCEEDED", executed_maybe=False)
        if status >= 500 or code in ("INTERNAL_SERVER_ERROR", "OVERLOAD_LIMIT"):
            raise BitrixError(
                f"{method}: HTTP {status} {code}".strip(), code or str(status), executed_maybe=True
            )
        raise CrmRejected(f"{method}: HTTP {status} {code}".strip())

    async def _call(
        self, method: str, params: dict[str, Any], ctx: DeliveryContext, *, on_ambiguous: Any = None
    ) -> Any:
        ambiguous = False

        async def attempt() -> Any:
            nonlocal ambiguous
            if ambiguous and on_ambiguous is not None:
                found = await on_ambiguous()
                if found is not None:
                    return found
            try:
                return await self._once(method, params, ctx)
            except BitrixError as exc:
                ambiguous = ambiguous or exc.executed_maybe
                raise

        def retry_on(exc: Exception) -> bool | float:
            return isinstance(exc, BitrixError)

        return await retrying(attempt, retry_on=retry_on, policy=self._policy, deadline=ctx.deadline)

    # ------------------------------------------------------------------ leads
    async def _find_lead(self, origin_id: str, ctx: DeliveryContext) -> str | None:
        found = await self._call(
            "crm.lead.list",
            {"filter": {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": origin_id}, "select": ["ID"]},
            ctx,
        )
        if isinstance(found, list) and found:
            return str(found[0]["ID"])
        return None

    async def _add_lead(self, fields: dict[str, Any], origin_id: str, ctx: DeliveryContext) -> str:
        fields = {
            **fields,
            "ORIGINATOR_ID": ORIGINATOR,
            "ORIGIN_ID": origin_id,
            "SOURCE_DESCRIPTION": "ClinicBot (Telegram)",
        }
        if ctx.redelivery:
            existing = await self._find_lead(origin_id, ctx)
            if existing is not None:
                log.info("Bitrix lead exists already (a redelivered message)")
                return existing

        async def check() -> str | None:
            return await self._find_lead(origin_id, ctx)

        result = await self._call(
            "crm.lead.add",
            {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}},
            ctx,
            on_ambiguous=check,
        )
        return str(result)

    @staticmethod
    def _names(patient: PatientInfo | None) -> dict[str, Any]:
        if patient is None:
            return {}
        return {k: v for k, v in {"NAME": patient.first_name, "LAST_NAME": patient.last_name}.items() if v}

    async def _patient_lead(self, user_id: int | None, patient_id: str, ctx: DeliveryContext) -> str:
        if user_id is not None:
            known = self._store.thread_of(CHANNEL, user_id)
            if known is not None:
                return known
        origin = f"patient:{patient_id}"
        lead = await self._find_lead(origin, ctx)
        if lead is None:
            title = self._t("handoff.bitrix.patient_lead", id=patient_id)
            lead = await self._add_lead({"TITLE": title, **self._names(ctx.patient)}, origin, ctx)
        if user_id is not None:
            lead = self._store.bind_thread(CHANNEL, user_id, lead)
        return lead

    async def _comment(
        self, lead: str, text: str, ctx: DeliveryContext, files: list[list[str]] | None = None
    ) -> Delivery:
        fields: dict[str, Any] = {
            "ENTITY_ID": int(lead) if lead.isdigit() else lead,
            "ENTITY_TYPE": "lead",
            "COMMENT": text,
        }
        if files:
            fields["FILES"] = files
        result = await self._call("crm.timeline.comment.add", {"fields": fields}, ctx)
        return Delivery(crm_id=str(result), thread=lead)

    # ------------------------------------------------------------------ the port
    async def submit_callback(self, request: CallbackRequest, ctx: DeliveryContext) -> Delivery:
        phone = request.phone or (ctx.patient.phone if ctx.patient else None)
        fields: dict[str, Any] = {
            "TITLE": self._t("handoff.bitrix.callback_title", number=request.number),
            "SOURCE_ID": "CALLBACK",
            "COMMENTS": _plain(callback_text(self._t, request, ctx.patient, phone, self._tz)),
            **self._names(ctx.patient),
        }
        if phone:
            fields["PHONE"] = [{"VALUE": "+" + normalize_phone(phone), "VALUE_TYPE": "MOBILE"}]
        lead = await self._add_lead(fields, ref_of(ctx.idempotency_key), ctx)
        return Delivery(crm_id=lead)

    async def submit_certificate(self, request: CertificateRequest, ctx: DeliveryContext) -> Delivery:
        fields = {
            "TITLE": self._t("handoff.bitrix.certificate_title", number=request.number),
            "SOURCE_ID": "OTHER",
            "COMMENTS": _plain(certificate_text(self._t, request, ctx.patient)),
            **self._names(ctx.patient),
        }
        lead = await self._add_lead(fields, ref_of(ctx.idempotency_key), ctx)
        return Delivery(crm_id=lead)

    async def relay_message(self, message: PatientMessage, ctx: DeliveryContext) -> Delivery:
        lead = await self._patient_lead(message.user_id, message.patient_id or str(message.user_id), ctx)
        text = self._t("handoff.bitrix.message", number=message.number, text=message.text or "—")
        files = None
        if message.file_id and ctx.fetch_file is not None:
            attachment = await ctx.fetch_file(message.file_id)
            if attachment is not None:
                files = [
                    [message.file_name or attachment.file_name, base64.b64encode(attachment.content).decode()]
                ]
        return await self._comment(lead, text, ctx, files)

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery:
        lead = await self._patient_lead(booking.user_id, booking.patient_id, ctx)
        return await self._comment(lead, _plain(booking_text(self._t, booking, self._tz)), ctx)

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        patient_id = payload.get("patient_id")
        if not isinstance(patient_id, str):
            log.warning("a hand-off message without a patient cannot go to Bitrix24", extra={"kind": kind})
            return Delivery()
        user = payload.get("user_id")
        lead = await self._patient_lead(int(user) if user is not None else None, patient_id, ctx)
        return await self._comment(lead, generic_text(kind, payload), ctx)

    async def notify(self, notice: Notice, ctx: DeliveryContext) -> Delivery:
        lead = await self._patient_lead(notice.user_id, notice.patient_id or str(notice.user_id), ctx)
        return await self._comment(lead, _plain(notice_text(self._t, notice)), ctx)
