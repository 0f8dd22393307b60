"""Errors an MIS adapter raises. Messages carry ids only, never names or phone numbers."""

from __future__ import annotations

__all__ = [
    "MisError",
    "MisUnavailable",
    "NotAllowed",
    "NotFound",
    "PatientExists",
    "SlotTaken",
    "Unsupported",
]


class MisError(Exception):
    """Base class of everything an MIS adapter raises on purpose."""


class SlotTaken(MisError):
    """The slot is booked or held by someone else (or was taken a moment ago)."""


class NotFound(MisError):
    """No such branch, doctor, specialty, service, slot, patient, appointment or hold."""


class NotAllowed(MisError):
    """The request is understood but refused: someone else's visit, a visit in the past, and the like."""


class PatientExists(NotAllowed):
    """A patient with this phone number is already registered."""


class MisUnavailable(MisError):
    """The MIS did not answer in time or is down; the caller shows a clear "try later" message."""


class Unsupported(MisError):
    """The adapter does not offer this capability (see ``MisPort.capabilities``)."""
