"""Booking: schedule reading, slot claims (no double booking), the booking service and its texts.

Domain logic only: no aiogram, boto3 or pynamodb imports here, except in ``claims_dynamo`` (the DynamoDB
adapter of the ``SlotClaims`` port), which this package does not import by itself.
"""

from clinicbot.booking.claims import DEFAULT_CLAIM_TTL, Claim, Clock, InMemorySlotClaims, SlotClaims, utc_now
from clinicbot.booking.schedule import HORIZON, MisScheduleReader, ScheduleReader, SlotFilter
from clinicbot.booking.service import BookingService, Outcome, Result, request_number

__all__ = [
    "DEFAULT_CLAIM_TTL",
    "HORIZON",
    "BookingService",
    "Claim",
    "Clock",
    "InMemorySlotClaims",
    "MisScheduleReader",
    "Outcome",
    "Result",
    "ScheduleReader",
    "SlotClaims",
    "SlotFilter",
    "request_number",
    "utc_now",
]
