"""Seed a FHIR R4 server with the demo clinic, so the FHIR adapter and the demo adapter describe one clinic.

Everything comes from ``DemoClinic`` built for the same day (``load_demo_data()`` plus the schedule the demo
generates from it): Organization, Locations (branches), Practitioners and PractitionerRoles (doctors, with
specialty codes), HealthcareServices, one Schedule per doctor, every Slot of the generated schedule (free
where the demo has it free, busy where "other patients" took it or a seeded visit is booked on it), Patients
with their phones, and the seeded Appointments. Ids are the demo's ids (``b-tverskaya``, ``d-01``,
``sv-ther-1``, ``p-001``, ``a-0001``); FHIR ids cannot hold ``@``, so a demo slot ``d-01@20261123T0600Z`` is
Slot ``d-01-20261123T0600Z``.

It is one ``batch`` Bundle of ``PUT Type/id`` entries (create-or-update), posted to the base URL.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clinicbot.adapters.mis_demo import DemoClinic, DemoData, load_demo_data
from clinicbot.adapters.mis_fhir import (
    DURATION_EXT,
    PRICE_EXT,
    PROFILE_EXT,
    SPECIALTY_SYSTEM,
    TIMEZONE_EXT,
    TRANSLATION_EXT,
    appointment_status_to_fhir,
    fhir_instant,
)
from clinicbot.domain.phones import format_phone, normalize_phone
from clinicbot.mis import Appointment, LocalizedText

__all__ = ["ORGANIZATION_ID", "build_bundle", "demo_sensitive_specialties", "schedule_id", "seed", "slot_id"]

ORGANIZATION_ID = "org-zdorovye"
WEEKDAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def slot_id(demo_slot_id: str) -> str:
    return demo_slot_id.replace("@", "-")


def schedule_id(doctor_id: str) -> str:
    return f"sch-{doctor_id}"


def role_id(doctor_id: str) -> str:
    return f"role-{doctor_id}"


def demo_sensitive_specialties(data: DemoData | None = None) -> frozenset[str]:
    """The specialty codes the demo marks sensitive (the FHIR adapter is configured with them)."""
    return frozenset(s.id for s in (data or load_demo_data()).specialties if s.sensitive)


def _translated(text: LocalizedText) -> dict[str, Any] | None:
    """The ``_element`` with the English translation of a Russian string, FHIR's standard way."""
    if not text.en:
        return None
    return {
        "extension": [
            {
                "url": TRANSLATION_EXT,
                "extension": [{"url": "lang", "valueCode": "en"}, {"url": "content", "valueString": text.en}],
            }
        ]
    }


def _named(key: str, text: LocalizedText) -> dict[str, Any]:
    result: dict[str, Any] = {key: text.ru}
    translation = _translated(text)
    if translation:
        result["_" + key] = translation
    return result


def _specialty(data: DemoData, code: str) -> dict[str, Any]:
    specialty = next(s for s in data.specialties if s.id == code)
    coding = {"system": SPECIALTY_SYSTEM, "code": code, **_named("display", specialty.name)}
    return {"coding": [coding], "text": specialty.name.ru}


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def _hours(branch_hours: Iterable[Any]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[str]] = {}
    for h in branch_hours:
        key = (h.opens.strftime("%H:%M:%S"), h.closes.strftime("%H:%M:%S"))
        grouped.setdefault(key, []).append(WEEKDAY_CODES[h.weekday])
    return [
        {"daysOfWeek": days, "openingTime": opens, "closingTime": closes}
        for (opens, closes), days in grouped.items()
    ]


def _appointment(data: DemoData, visit: Appointment, slot_ids: set[str]) -> dict[str, Any]:
    status, patient_status = appointment_status_to_fhir(visit.status)
    participants = [
        {"actor": {"reference": f"Patient/{visit.patient_id}"}, "status": patient_status},
        {
            "actor": {"reference": f"Practitioner/{visit.doctor_id}"},
            "required": "required",
            "status": "accepted",
        },
        {"actor": {"reference": f"Location/{visit.branch_id}"}, "status": "accepted"},
    ]
    if visit.service_id:
        participants.append(
            {"actor": {"reference": f"HealthcareService/{visit.service_id}"}, "status": "accepted"}
        )
    resource: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": visit.id,
        "status": status,
        "start": fhir_instant(visit.start),
        "end": fhir_instant(visit.end),
        "minutesDuration": int((visit.end - visit.start).total_seconds() // 60),
        "participant": participants,
    }
    demo_slot = f"{visit.doctor_id}@{visit.start.astimezone(UTC):%Y%m%dT%H%M}Z"
    if visit.is_active and demo_slot in slot_ids:
        resource["slot"] = [{"reference": f"Slot/{slot_id(demo_slot)}"}]
    doctor = next(d for d in data.doctors if d.id == visit.doctor_id)
    resource["specialty"] = [_specialty(data, doctor.specialty_ids[0])]
    return resource


def build_bundle(today: date | None = None, *, days: int | None = None) -> dict[str, Any]:
    """The seed as one ``batch`` Bundle; ``days`` limits the slots to the first days of the schedule."""
    clinic = DemoClinic(today)
    data = load_demo_data()
    entries: list[dict[str, Any]] = [
        _put(
            {
                "resourceType": "Organization",
                "id": ORGANIZATION_ID,
                "active": True,
                **_named("name", LocalizedText(ru="Клиника «Здоровье»", en="Zdorovye Clinic")),
            }
        )
    ]
    for branch in data.branches:
        location: dict[str, Any] = {
            "resourceType": "Location",
            "id": branch.id,
            "status": "active",
            "mode": "instance",
            **_named("name", branch.name),
            "address": {"use": "work", "type": "physical", **_named("text", branch.address)},
            "managingOrganization": {"reference": f"Organization/{ORGANIZATION_ID}"},
            "hoursOfOperation": _hours(branch.opening_hours),
            "extension": [{"url": TIMEZONE_EXT, "valueCode": branch.timezone}],
        }
        if branch.lat is not None and branch.lon is not None:
            location["position"] = {"latitude": branch.lat, "longitude": branch.lon}
        if branch.phone:
            location["telecom"] = [{"system": "phone", "value": branch.phone, "use": "work"}]
        entries.append(_put(location))

    for service in data.services:
        branches = sorted({d.branch_id for d in data.doctors if service.specialty_id in d.specialty_ids})
        entries.append(
            _put(
                {
                    "resourceType": "HealthcareService",
                    "id": service.id,
                    "active": True,
                    "providedBy": {"reference": f"Organization/{ORGANIZATION_ID}"},
                    "specialty": [_specialty(data, service.specialty_id)],
                    "location": [{"reference": f"Location/{b}"} for b in branches],
                    **_named("name", service.name),
                    "extension": [
                        {"url": PRICE_EXT, "valueMoney": {"value": float(service.price), "currency": "RUB"}},
                        {
                            "url": DURATION_EXT,
                            "valueDuration": {
                                "value": service.duration_minutes,
                                "unit": "min",
                                "system": "http://unitsofmeasure.org",
                                "code": "min",
                            },
                        },
                    ],
                }
            )
        )

    for doctor in data.doctors:
        family, *given = doctor.full_name.ru.split()
        practitioner: dict[str, Any] = {
            "resourceType": "Practitioner",
            "id": doctor.id,
            "active": True,
            "name": [
                {"use": "official", "family": family, "given": given, **_named("text", doctor.full_name)}
            ],
        }
        if doctor.profile is not None:
            languages = [("ru", doctor.profile.ru), ("en", doctor.profile.en)]
            practitioner["extension"] = [
                {
                    "url": PROFILE_EXT,
                    "extension": [{"url": lang, "valueString": text} for lang, text in languages if text],
                }
            ]
        entries.append(_put(practitioner))
        services = [s.id for s in data.services if s.specialty_id in doctor.specialty_ids]
        entries.append(
            _put(
                {
                    "resourceType": "PractitionerRole",
                    "id": role_id(doctor.id),
                    "active": True,
                    "practitioner": {"reference": f"Practitioner/{doctor.id}"},
                    "organization": {"reference": f"Organization/{ORGANIZATION_ID}"},
                    "location": [{"reference": f"Location/{doctor.branch_id}"}],
                    "specialty": [_specialty(data, code) for code in doctor.specialty_ids],
                    "healthcareService": [{"reference": f"HealthcareService/{s}"} for s in services],
                }
            )
        )
        horizon_start = datetime.combine(clinic.today, datetime.min.time(), UTC)
        entries.append(
            _put(
                {
                    "resourceType": "Schedule",
                    "id": schedule_id(doctor.id),
                    "active": True,
                    "actor": [
                        {"reference": f"Practitioner/{doctor.id}"},
                        {"reference": f"PractitionerRole/{role_id(doctor.id)}"},
                        {"reference": f"Location/{doctor.branch_id}"},
                    ],
                    "specialty": [_specialty(data, code) for code in doctor.specialty_ids],
                    "planningHorizon": {
                        "start": fhir_instant(horizon_start),
                        "end": fhir_instant(horizon_start + timedelta(days=days or data.horizon_days)),
                    },
                }
            )
        )

    all_slots = clinic.all_slots()
    if days is not None:
        until = datetime.combine(clinic.today + timedelta(days=days), datetime.min.time(), UTC)
        all_slots = [s for s in all_slots if s.start < until]
    free = {
        s.id
        for s in asyncio.run(
            clinic.free_slots(start=datetime(1970, 1, 1, tzinfo=UTC), end=datetime(9999, 1, 1, tzinfo=UTC))
        )
    }
    for slot in all_slots:
        entries.append(
            _put(
                {
                    "resourceType": "Slot",
                    "id": slot_id(slot.id),
                    "schedule": {"reference": f"Schedule/{schedule_id(slot.doctor_id)}"},
                    "status": "free" if slot.id in free else "busy",
                    "start": fhir_instant(slot.start),
                    "end": fhir_instant(slot.end),
                }
            )
        )

    demo_slot_ids = {s.id for s in all_slots}
    for patient in data.patients:
        digits = normalize_phone(patient.phone)
        resource: dict[str, Any] = {
            "resourceType": "Patient",
            "id": patient.id,
            "active": True,
            "name": [{"use": "official", "given": [patient.first_name]}],
            # As a receptionist would type it ("+7 999 100-00-01"): the adapter searches the usual forms.
            "telecom": [{"system": "phone", "value": format_phone(digits), "use": "mobile"}],
        }
        if patient.last_name:
            resource["name"][0]["family"] = patient.last_name
        entries.append(_put(resource))
        visits = asyncio.run(clinic.visits(patient.id))
        for visit in (*visits.upcoming, *visits.past):
            entries.append(_put(_appointment(data, visit, demo_slot_ids)))

    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


def seed(base_url: str, today: date | None = None, *, days: int | None = None, timeout: float = 60.0) -> int:
    """Post the seed to a FHIR server; returns the number of entries. Fails loudly on any error entry."""
    bundle = build_bundle(today, days=days)
    request = urllib.request.Request(
        base_url.rstrip("/"),
        data=json.dumps(bundle, ensure_ascii=False).encode(),
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        result = json.loads(response.read())
    failed = [
        (entry.get("response") or {}).get("status")
        for entry in result.get("entry") or []
        if not str((entry.get("response") or {}).get("status", "")).startswith("2")
    ]
    if failed or len(result.get("entry") or []) != len(bundle["entry"]):
        raise RuntimeError(f"seeding the FHIR server failed: {len(failed)} entries refused ({failed[:5]})")
    return len(bundle["entry"])
