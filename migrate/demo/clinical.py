"""Rows of the clinical services: Summary Care Records (SCR) and prescriptions (EPS).

Amounts are chosen as decimal text and stored as the float SQLite keeps for NUMBER(p,s), so the
source has to recover `12.50` from `12.5` exactly. Ids are shuffled permutations and rows are
shuffled before they are yielded (see `generate`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

from migrate.demo import data
from migrate.demo.generate import (
    TODAY,
    Row,
    below,
    between,
    date_text,
    id_permutation,
    moment_text,
    pick,
    random_day,
    random_moment,
    shuffled,
    zoned_text,
)

LONG_NOTE_SHARE = 0.04
INSTRUCTIONS = (
    "Take one tablet twice a day — with food.",
    "Apply thinly to the affected area.",
    "Two puffs when required; max 8 in 24 h.",
    "Take at night.",
)


def summary_note(rng: random.Random) -> str | None:
    """A CLOB: mostly a few sentences, sometimes well past the 4000 characters of a VARCHAR2."""
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.1 + LONG_NOTE_SHARE:
        target = between(rng, 4001, 9000)
        parts: list[str] = []
        length = 0
        while length <= target:
            sentence = pick(rng, data.NOTE_SENTENCES)
            parts.append(sentence)
            length += len(sentence) + 1
        return " ".join(parts)
    return " ".join(pick(rng, data.NOTE_SENTENCES) for _ in range(between(rng, 1, 4)))


def scr_rows(
    rng: random.Random, nhs_numbers: list[str], drug_codes: list[str]
) -> Iterator[tuple[str, list[Row]]]:
    """SCR_RECORDS for about half of the patients (never two for one patient), with allergies,
    their adverse reactions (a nested embed) and medications."""
    holders = rng.sample(nhs_numbers, len(nhs_numbers) // 2)
    record_ids = id_permutation(rng, len(holders), 500_000_000_001)
    records: list[Row] = []
    for record_id, number in zip(record_ids, holders, strict=True):
        updated = random_moment(rng, date(2008, 1, 1), TODAY, fraction=0.7)
        records.append((record_id, number, zoned_text(rng, updated, sep="T"), summary_note(rng)))
    yield "SCR_RECORDS", shuffled(rng, records)

    allergy_counts = [pick(rng, (0, 0, 1, 1, 2, 3)) for _ in record_ids]
    allergy_ids = iter(id_permutation(rng, sum(allergy_counts), 600_000_000_001))
    allergies: list[Row] = []
    for record_id, count in zip(record_ids, allergy_counts, strict=True):
        shared = random_day(rng, date(1990, 1, 1), TODAY)
        for _ in range(count):
            # a fifth of them share a day with the record's other allergies: ties in order_by
            day = shared if rng.random() < 0.2 else random_day(rng, date(1990, 1, 1), TODAY)
            severity = pick(rng, data.SEVERITIES) if rng.random() > 0.05 else None
            substance = pick(rng, data.SUBSTANCES)
            allergies.append((next(allergy_ids), record_id, substance, severity, date_text(day)))
    reactions: list[Row] = []
    reaction_counts = [pick(rng, (0, 1, 1, 2)) for _ in allergies]
    reaction_ids = iter(id_permutation(rng, sum(reaction_counts), 700_000_000_001))
    for allergy, count in zip(allergies, reaction_counts, strict=True):
        for _ in range(count):
            code, description = pick(rng, data.REACTIONS)
            onset: str | None = None
            if rng.random() > 0.15:
                moment = random_moment(rng, date(1990, 1, 1), TODAY)
                if rng.random() < 0.1:
                    moment = moment.replace(hour=0, minute=0, second=0)
                onset = moment_text(moment)
            text = description if rng.random() > 0.1 else None
            reactions.append((next(reaction_ids), allergy[0], code, text, onset))
    yield "SCR_ALLERGIES", shuffled(rng, allergies)
    yield "SCR_ADVERSE_REACTIONS", shuffled(rng, reactions)

    medication_counts = [pick(rng, (0, 1, 2, 3, 4)) for _ in record_ids]
    medication_ids = iter(id_permutation(rng, sum(medication_counts), 800_000_000_001))
    medications: list[Row] = []
    for record_id, count in zip(record_ids, medication_counts, strict=True):
        for _ in range(count):
            dose = float(Decimal(pick(rng, data.DOSES))) if rng.random() > 0.05 else None
            strength = pick(rng, data.STRENGTHS) if rng.random() > 0.05 else None
            per_day = str(between(rng, 1, 4)) if rng.random() > 0.05 else None
            started = random_day(rng, date(2000, 1, 1), TODAY)
            note = pick(rng, INSTRUCTIONS) if rng.random() > 0.3 else None
            drug = pick(rng, drug_codes)
            medications.append(
                (
                    next(medication_ids),
                    record_id,
                    drug,
                    dose,
                    strength,
                    per_day,
                    date_text(started),
                    note,
                )
            )
    yield "SCR_MEDICATIONS", shuffled(rng, medications)


def eps_rows(
    rng: random.Random,
    nhs_numbers: list[str],
    gp_codes: list[str],
    pharmacy_codes: list[str],
    drug_codes: list[str],
) -> Iterator[tuple[str, list[Row]]]:
    """PRESCRIPTIONS (composite key), PRESCRIPTION_ITEMS and DISPENSE_EVENTS: three levels, the
    events linked to their item by ITEM_ID only."""
    count = len(nhs_numbers) * 3 // 2
    next_number = {code: between(rng, 1, 999_999) for code in gp_codes}
    item_counts = [pick(rng, (1, 1, 1, 2, 2, 3, 4)) for _ in range(count)]
    item_ids = iter(id_permutation(rng, sum(item_counts), 900_000_000_001))
    prescriptions: list[Row] = []
    items: list[Row] = []
    issued_days: list[date] = []
    for item_count in item_counts:
        prescriber = pick(rng, gp_codes)
        number = next_number[prescriber]
        next_number[prescriber] = number + between(rng, 1, 3)
        issued = random_moment(rng, date(2015, 1, 1), TODAY - timedelta(days=31), fraction=0.6)
        total = Decimal(0)
        for item_no in range(1, item_count + 1):
            price = Decimal(pick(rng, data.PRICES)) if rng.random() > 0.02 else None
            total += price or 0
            quantity = float(Decimal(pick(rng, data.QUANTITIES)))
            items.append(
                (
                    prescriber,
                    number,
                    item_no,
                    next(item_ids),
                    pick(rng, drug_codes),
                    quantity,
                    float(price) if price is not None else None,
                )
            )
            issued_days.append(issued.date())
        cost = float(total) if rng.random() > 0.03 else None
        status = pick(rng, data.PRESCRIPTION_STATUSES)
        number_row = (prescriber, number, pick(rng, nhs_numbers), moment_text(issued), status, cost)
        prescriptions.append(number_row)
    yield "PRESCRIPTIONS", shuffled(rng, prescriptions)

    event_counts = [pick(rng, (0, 1, 1, 2)) for _ in items]
    event_ids = iter(id_permutation(rng, sum(event_counts), 950_000_000_001))
    events: list[Row] = []
    for item, issued_day, event_count in zip(items, issued_days, event_counts, strict=True):
        first = random_moment(rng, issued_day, issued_day + timedelta(days=30))
        for index in range(event_count):
            # a tenth of second dispenses share the first one's time: ties broken by EVENT_ID
            same = index > 0 and rng.random() < 0.1
            moment = first if same else first + timedelta(minutes=between(rng, 0, 20_000) * index)
            events.append(
                (
                    next(event_ids),
                    item[3],
                    moment_text(moment),
                    _pharmacy(rng, pharmacy_codes),
                    rng.randbytes(between(rng, 8, 48)) if rng.random() > 0.1 else None,
                )
            )
    yield "PRESCRIPTION_ITEMS", shuffled(rng, items)
    yield "DISPENSE_EVENTS", shuffled(rng, events)


def _pharmacy(rng: random.Random, pharmacy_codes: list[str]) -> str | None:
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.04:
        return f"V{below(rng, 10_000):04d}"  # a pharmacy that matches no organisation
    return pick(rng, pharmacy_codes)
