"""Rows of the demo estate: ODS and PDS here, SCR and EPS in `clinical`.

Everything comes from one `random.Random(seed)` consumed in a fixed order, so a seed gives the same
database byte for byte. Rows are plain tuples, yielded one table at a time so a large estate never
sits in memory whole. Child rows are shuffled before they are yielded and their ids are a shuffled
permutation: neither physical order nor id order follows the parent, as in a real legacy estate.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import TypeVar

from migrate.demo import data

Row = tuple[object, ...]
T = TypeVar("T")

TODAY = date(2024, 12, 31)


# -- small deterministic helpers ------------------------------------------------------------------


# `random.Random.choice`/`randint`/`shuffle` run `_randbelow` in Python; these draw one C-level
# `random()` each: the estate builds much faster, and just as deterministically.


def below(rng: random.Random, stop: int) -> int:
    """An int in [0, stop)."""
    return int(rng.random() * stop)


def between(rng: random.Random, low: int, high: int) -> int:
    """An int in [low, high]."""
    return low + int(rng.random() * (high - low + 1))


def pick(rng: random.Random, options: Sequence[T]) -> T:
    return options[int(rng.random() * len(options))]


def shuffled(rng: random.Random, rows: list[T]) -> list[T]:
    """Rows in an order unrelated to how they were made (reordered in place, and returned)."""
    keys = [rng.random() for _ in range(len(rows))]
    order = sorted(range(len(rows)), key=keys.__getitem__)
    rows[:] = [rows[index] for index in order]
    return rows


def id_permutation(rng: random.Random, count: int, base: int) -> list[int]:
    """`count` distinct ids from `base`, in random order: id order says nothing about the parent."""
    return shuffled(rng, list(range(base, base + count)))


def random_day(rng: random.Random, start: date, end: date) -> date:
    return date.fromordinal(between(rng, start.toordinal(), end.toordinal()))


def random_moment(rng: random.Random, start: date, end: date, *, fraction: float = 0.0) -> datetime:
    """A time of day on a day in [start, end]; with probability `fraction` it has microseconds."""
    day = random_day(rng, start, end)
    moment = datetime(day.year, day.month, day.day) + timedelta(seconds=below(rng, 86400))
    if fraction and rng.random() < fraction:
        moment = moment.replace(microsecond=between(rng, 1, 999_999))
    return moment


def date_text(day: date) -> str:
    """A date-only DATE as `YYYY-MM-DD`."""
    return day.isoformat()


def midnight_text(day: date) -> str:
    """A date-only DATE the way Oracle exports hold it: at midnight."""
    return f"{day.isoformat()} 00:00:00"


def moment_text(moment: datetime, sep: str = " ") -> str:
    """A DATE or TIMESTAMP with a time of day; `.ffffff` only when there are microseconds."""
    return moment.isoformat(sep)


def zoned_text(rng: random.Random, moment: datetime, *, sep: str = " ") -> str:
    """A TIMESTAMP WITH TIME ZONE as text: local time plus one of several offsets, a few none."""
    roll = rng.random()
    if roll < 0.02:
        return moment.isoformat(sep)  # no offset: read as UTC
    return moment.isoformat(sep) + pick(rng, data.UTC_OFFSETS)


def postcode(rng: random.Random) -> str:
    area = pick(rng, data.POSTCODE_AREAS)
    letters = data.POSTCODE_LETTERS
    return (
        f"{area}{between(rng, 1, 29)} {between(rng, 0, 9)}{pick(rng, letters)}{pick(rng, letters)}"
    )


def nhs_check_digit(body: str) -> int | None:
    """The mod-11 check digit of a 9-digit NHS number body, or None when the body has none."""
    total = sum(int(digit) * weight for digit, weight in zip(body, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def nhs_numbers(rng: random.Random, count: int) -> list[str]:
    """Distinct valid-looking NHS numbers. They start with 9, a range never issued in England."""
    seen: set[str] = set()
    numbers: list[str] = []
    while len(numbers) < count:
        body = str(900_000_000 + below(rng, 100_000_000))
        check = nhs_check_digit(body)
        if check is None:
            continue
        number = f"{body}{check}"
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    return numbers


def _base36(value: int, width: int) -> str:
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        chars.append(alphabet[digit])
    return "".join(reversed(chars))


# -- ODS ------------------------------------------------------------------------------------------


def _org_counts(patients: int) -> dict[str, int]:
    total = max(50, patients // 20)
    icb = max(3, total * 3 // 100)
    trusts = max(5, total * 7 // 100)
    pharmacies = total * 40 // 100
    return {"ICB": icb, "TR": trusts, "GP": total - icb - trusts - pharmacies, "PH": pharmacies}


def _org_codes(rng: random.Random, counts: dict[str, int]) -> dict[str, list[str]]:
    gp_letters = "ABCDEFGHJKLMNPWY"
    gp = rng.sample(range(len(gp_letters) * 100_000), counts["GP"])
    return {
        "ICB": ["Q" + _base36(v, 3) for v in rng.sample(range(36**3), counts["ICB"])],
        "TR": ["R" + _base36(v, 3) for v in rng.sample(range(36**3), counts["TR"])],
        "GP": [f"{gp_letters[v // 100_000]}{v % 100_000:05d}" for v in gp],
        "PH": ["F" + _base36(v, 4) for v in rng.sample(range(36**4), counts["PH"])],
    }


def _org_name(rng: random.Random, org_type: str) -> str:
    town, family, street = (
        pick(rng, data.TOWNS),
        pick(rng, data.FAMILY_NAMES),
        pick(rng, data.STREETS),
    )
    options: Sequence[str]
    if org_type == "ICB":
        options = (f"NHS {pick(rng, data.REGIONS)} Integrated Care Board",)
    elif org_type == "TR":
        options = (
            f"{town} Teaching Hospitals NHS Foundation Trust",
            f"{town} Community Health NHS Trust",
        )
    elif org_type == "GP":
        options = (
            f"{street} Surgery",
            f"{town} Medical Centre",
            f"Dr {family} & Partners",
            f"Meddygfa {town}",
        )
    else:
        options = (f"{town} Pharmacy", f"{family}'s Chemist", f"Fferyllfa {town}")
    return pick(rng, options)


def _extra_attrs(rng: random.Random, org_type: str) -> str | None:
    """Free-form JSON the legacy system kept in a CLOB; mapped with `as: json`."""
    if org_type == "TR":
        attrs: dict[str, object] = {
            "beds": between(rng, 80, 1800),
            "emergencyDepartment": rng.random() < 0.6,
            "site": pick(rng, data.TOWNS),
        }
    elif org_type == "ICB":
        attrs = {"population": between(rng, 300_000, 3_000_000)}
    elif org_type == "GP" and rng.random() < 0.1:
        attrs = {"listSize": between(rng, 1500, 30_000), "dispensing": rng.random() < 0.2}
    else:
        return None
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True)


def ods_rows(
    rng: random.Random, patients: int
) -> tuple[list[Row], list[Row], dict[str, list[str]]]:
    """ORGANISATIONS and ORG_ROLES rows, and the organisation codes by type."""
    codes = _org_codes(rng, _org_counts(patients))
    orgs: list[Row] = []
    roles: list[Row] = []
    for org_type in data.ORG_TYPES:
        for code in codes[org_type]:
            opened = random_day(rng, date(1948, 7, 5), date(2023, 12, 31))
            closed = random_day(rng, opened, TODAY) if rng.random() < 0.05 else None
            parent: str | None = None
            if org_type in ("GP", "PH"):
                roll = rng.random()
                if roll < 0.01:
                    parent = f"X{below(rng, 10_000):04d}"  # a parent that is gone from ODS
                elif roll < 0.97:
                    parent = pick(rng, codes["ICB"])
            changed = random_moment(rng, date(2015, 1, 1), TODAY, fraction=0.9)
            orgs.append(
                (
                    code,
                    _org_name(rng, org_type),
                    org_type,
                    postcode(rng) if rng.random() > 0.05 else None,
                    date_text(opened),
                    date_text(closed) if closed else None,
                    parent,
                    _extra_attrs(rng, org_type),
                    moment_text(changed),
                )
            )
            roles.extend(_org_roles(rng, code, org_type, opened, closed))
    return shuffled(rng, orgs), shuffled(rng, roles), codes


def _org_roles(
    rng: random.Random, code: str, org_type: str, opened: date, closed: date | None
) -> list[Row]:
    """A primary role (sometimes held in two periods) and secondary roles, some starting the same
    day as the primary: ties in the embed's `order_by`, broken by the composite primary key."""
    primary = data.PRIMARY_ROLE[org_type]
    end = midnight_text(closed) if closed else None
    rows: list[Row] = []
    last = closed or TODAY
    if rng.random() < 0.05 and (last - opened).days > 10:
        gap = random_day(rng, opened + timedelta(days=2), last - timedelta(days=2))
        rows.append((code, primary, midnight_text(opened), midnight_text(gap), "Y"))
        rows.append((code, primary, midnight_text(gap + timedelta(days=1)), end, "Y"))
    else:
        rows.append((code, primary, midnight_text(opened), end, "Y"))
    for role in data.SECONDARY_ROLES[org_type]:
        if rng.random() < 0.35:
            start = opened if rng.random() < 0.5 else random_day(rng, opened, last)
            rows.append((code, role, midnight_text(start), None, "N"))
    return rows


# -- PDS ------------------------------------------------------------------------------------------


def _birth_date(rng: random.Random) -> date:
    if rng.random() < 0.005:
        return date(pick(rng, range(1924, 2024, 4)), 2, 29)
    return random_day(rng, date(1920, 1, 1), TODAY)


def _gp_code(rng: random.Random, gp_codes: list[str]) -> str | None:
    roll = rng.random()
    if roll < 0.03:
        return None
    if roll < 0.035:
        return f"V{below(rng, 100_000):05d}"  # a practice that matches no organisation
    return pick(rng, gp_codes)


def _sensitive_flag(rng: random.Random) -> str | None:
    roll = rng.random()
    return "S" if roll < 0.01 else None if roll < 0.5 else "N"


def _patient(rng: random.Random, nhs_number: str, gp_codes: list[str]) -> tuple[Row, date]:
    born = _birth_date(rng)
    died: str | None = None
    if rng.random() < 0.03:
        moment = random_moment(rng, min(born + timedelta(days=1), TODAY), TODAY)
        if rng.random() < 0.1:
            moment = moment.replace(hour=0, minute=0, second=0)  # time of death not known
        died = moment_text(moment)
    created = random_moment(rng, date(2000, 1, 1), TODAY, fraction=0.5)
    gender = pick(rng, data.GENDERS) if rng.random() > 0.02 else None
    row = (
        nhs_number,
        pick(rng, data.GIVEN_NAMES) if rng.random() > 0.03 else None,
        pick(rng, data.FAMILY_NAMES),
        date_text(born),
        gender,
        _gp_code(rng, gp_codes),
        _sensitive_flag(rng),
        died,
        rng.randbytes(16),
        zoned_text(rng, created),
        between(rng, 1, 999),
    )
    return row, born


def _address_lines(rng: random.Random) -> tuple[str | None, ...]:
    """LINE1..LINE5 with gaps: a NULL line may sit between two filled ones."""
    line1 = f"{between(rng, 1, 250)} {pick(rng, data.STREETS)}"
    if rng.random() < 0.1:
        line1 = f"Flat {between(rng, 1, 40)}, {line1}"
    line2 = pick(rng, data.TOWNS) + " Village" if rng.random() < 0.4 else None
    line3 = pick(rng, data.TOWNS)
    line4 = pick(rng, data.REGIONS) if rng.random() < 0.2 else None
    line5 = "United Kingdom" if rng.random() < 0.02 else None
    return line1, line2, line3, line4, line5


def _addresses(rng: random.Random, nhs_number: str, born: date) -> list[list[object]]:
    """0-3 addresses; the latest current (TO_DATE NULL), some pairs starting the same day."""
    count = pick(rng, (0, 1, 1, 1, 1, 2, 2, 3))
    starts = sorted(random_day(rng, born, TODAY) for _ in range(count))
    if count >= 2 and rng.random() < 0.1:
        starts[-1] = starts[-2]  # a tie on FROM_DATE: the embed orders these by ADDRESS_ID
    rows: list[list[object]] = []
    for index, start in enumerate(starts):
        following = starts[index + 1] if index + 1 < count else None
        ended = midnight_text(following) if following and following > start else None
        rows.append(
            [
                None,  # ADDRESS_ID, assigned later from a shuffled permutation
                nhs_number,
                pick(rng, data.ADDRESS_USES),
                *_address_lines(rng),
                postcode(rng) if rng.random() > 0.03 else None,
                midnight_text(start),
                ended,
            ]
        )
    return rows


def _telecom(rng: random.Random, nhs_number: str, given: object) -> list[object]:
    system = pick(rng, data.TELECOM_SYSTEMS)
    if system == "email":
        local = str(given or "patient").lower().replace(" ", "").replace("'", "")
        value = f"{local}.{between(rng, 1, 9999)}@example.nhs.uk"
    else:
        value = f"07700 900{below(rng, 1000):03d}"
    use = pick(rng, data.TELECOM_USES) if rng.random() > 0.1 else None
    return [None, nhs_number, system, value, use]


def _assign_ids(rng: random.Random, rows: list[list[object]], base: int) -> list[Row]:
    """Give rows ids from a shuffled permutation (column 0), then shuffle the rows."""
    for row, row_id in zip(rows, id_permutation(rng, len(rows), base), strict=True):
        row[0] = row_id
    return shuffled(rng, [tuple(row) for row in rows])


def pds_rows(
    rng: random.Random, numbers: list[str], gp_codes: list[str], pharmacy_codes: list[str]
) -> Iterator[tuple[str, list[Row]]]:
    """PATIENTS (one per NHS number) and their child tables, one table at a time."""
    people: list[Row] = []
    names: list[list[object]] = []
    addresses: list[list[object]] = []
    telecoms: list[list[object]] = []
    nominations: list[Row] = []
    for number in numbers:
        person, born = _patient(rng, number, gp_codes)
        people.append(person)
        if rng.random() < 0.2:
            for _ in range(pick(rng, (1, 1, 2))):
                ended = random_day(rng, born, TODAY)
                started = random_day(rng, born, ended) if rng.random() < 0.7 else None
                names.append(
                    [
                        None,
                        number,
                        pick(rng, data.NAME_USES),
                        person[1],
                        pick(rng, data.FAMILY_NAMES),
                        date_text(started) if started else None,
                        date_text(ended),
                    ]
                )
        addresses.extend(_addresses(rng, number, born))
        telecoms.extend(_telecom(rng, number, person[1]) for _ in range(pick(rng, (0, 1, 1, 2, 3))))
        if rng.random() < 0.4:
            nominated = random_day(rng, date(2010, 1, 1), TODAY)
            nominations.append((number, pick(rng, pharmacy_codes), date_text(nominated)))
    yield "PATIENTS", people
    yield "PATIENT_NAMES", _assign_ids(rng, names, 10_000_001)
    yield "PATIENT_ADDRESSES", _assign_ids(rng, addresses, 20_000_001)
    yield "PATIENT_TELECOMS", _assign_ids(rng, telecoms, 30_000_001)
    yield "PATIENT_PHARMACIES", shuffled(rng, nominations)
