"""Word pools for the demo estate: fake but realistic, with the non-ASCII and punctuation that real
names, places and notes carry (a migration that mangles `Siân` or `O'Brien` must be caught here)."""

from __future__ import annotations

GIVEN_NAMES: tuple[str, ...] = (
    "Olivia", "Amelia", "Isla", "Ava", "Oliver", "George", "Harry", "Noah", "Jack", "Leo",
    "Arthur", "Muhammad", "Emily", "Sophie", "Grace", "Mia", "Freya", "James", "Thomas", "William",
    "Jacob", "Charlotte", "Ella", "Evie", "Daniel", "Samuel", "Joseph", "Lily", "Poppy", "Ruby",
    "Siân", "Zoë", "Chloë", "José", "Łukasz", "Aoife", "Niamh", "Siobhán", "Seán", "Dafydd",
    "Rhiannon", "Fatima", "Priya", "Wei", "Thảo", "Björn", "Søren", "Renée", "Anaïs", "François",
    "Jürgen", "Małgorzata", "Oluwaseun", "Chinonso", "Zoe\u0308",  # NFD: e + combining diaeresis
    "Mary-Jane", "D'Arcy", "Åsa", "Ýr", "Gráinne",
)  # fmt: skip

FAMILY_NAMES: tuple[str, ...] = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas",
    "Roberts", "Johnson", "Lewis", "Walker", "Robinson", "Wood", "Thompson", "White", "Watson",
    "Jackson", "Wright", "Green", "Harris", "Cooper", "King", "Lee", "Martin", "Clarke", "Morgan",
    "Hughes", "Edwards", "Hill", "Moore", "Patel", "Khan", "Singh", "Ahmed", "Ali", "O'Brien",
    "O'Sullivan", "Ó Súilleabháin", "Øvrebø", "Nguyễn", "Müller", "Dvořák", "Wójcik", "Đorđević",
    "García", "Núñez", "ap Rhys", "Fitzgerald-Smythe", "van der Berg", "MacDonald", "McAllister",
    "Þórsson", "𠮷田", "Kowalski", "Łęcka", "Ferreira", "Okonkwo",
)  # fmt: skip

TOWNS: tuple[str, ...] = (
    "Leeds", "Manchester", "Birmingham", "Bristol", "Newcastle upon Tyne", "Sheffield",
    "Nottingham", "Leicester", "Liverpool", "Exeter", "Norwich", "York", "Carlisle", "Truro",
    "Bury St Edmunds", "Stoke-on-Trent", "King's Lynn", "Ynys Môn", "Llanfairpwllgwyngyll",
    "Berwick-upon-Tweed", "Weston-super-Mare", "Ashby-de-la-Zouch",
)  # fmt: skip

STREETS: tuple[str, ...] = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane", "Manor Road",
    "Park Avenue", "Queen's Road", "The Crescent", "Mill Lane", "Heol y Frenhines", "Ffordd Glan",
    "St John's Close", "Rue de l'Église",
)  # fmt: skip

REGIONS: tuple[str, ...] = (
    "West Yorkshire", "Greater Manchester", "Birmingham and Solihull", "Bristol, North Somerset "
    "and South Gloucestershire", "North East and North Cumbria", "South Yorkshire", "Nottingham "
    "and Nottinghamshire", "Leicester, Leicestershire and Rutland", "Cheshire and Merseyside",
    "Devon", "Norfolk and Waveney", "Humber and North Yorkshire",
    "Cornwall and the Isles of Scilly",
)  # fmt: skip

POSTCODE_AREAS: tuple[str, ...] = (
    "LS", "M", "B", "BS", "NE", "S", "NG", "LE", "L", "EX", "NR", "YO", "CA", "TR", "IP", "ST",
    "PE", "LL", "TD", "BS", "LE",
)  # fmt: skip
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# Drugs: (DRUG_CODE as dm+d-like digits in text, NAME, FORM); long codes are real dm+d shapes.
DRUGS: tuple[tuple[str, str, str], ...] = (
    ("322236009", "Paracetamol 500mg tablets", "tablet"),
    ("317896006", "Amoxicillin 500mg capsules", "capsule"),
    ("320000009", "Simvastatin 40mg tablets", "tablet"),
    ("318135007", "Omeprazole 20mg gastro-resistant capsules", "capsule"),
    ("319740004", "Salbutamol 100micrograms/dose inhaler CFC free", "inhaler"),
    ("325072002", "Metformin 500mg tablets", "tablet"),
    ("321208004", "Sertraline 50mg tablets", "tablet"),
    ("39695211000001102", "Co-codamol 30mg/500mg tablets", "tablet"),
    ("322280009", "Ibuprofen 100mg/5ml oral suspension sugar free", "oral suspension"),
    ("319996000", "Levothyroxine sodium 100microgram tablets", "tablet"),
    ("318420003", "Amlodipine 5mg tablets", "tablet"),
    ("318860005", "Ramipril 2.5mg capsules", "capsule"),
    ("376707006", "Calcium carbonate 1.25g / colecalciferol 10µg chewable tablets", "tablet"),
    ("330165004", "Beclometasone 100micrograms/dose inhaler", "inhaler"),
    ("324357002", "Lansoprazole 30mg orodispersible tablets", "tablet"),
    ("326105003", "Fluoxetine 20mg capsules", "capsule"),
    ("42215511000001101", "Emollient cream (paraffin 21%)", "cream"),
    ("317972000", "Doxycycline 100mg capsules", "capsule"),
    ("322503004", "Morphine sulfate 10mg/5ml oral solution", "oral solution"),
    ("34186711000001102", "Insulin glargine 100units/ml 3ml pre-filled pen", "injection"),
    ("375795004", "Warfarin 1mg tablets", "tablet"),
    ("330283009", "Prednisolone 5mg tablets", "tablet"),
)

SUBSTANCES: tuple[str, ...] = (
    "Penicillin", "Peanut", "Latex", "Aspirin", "Ibuprofen", "Shellfish", "Codeine",
    "Sulfonamides", "Amoxicillin", "Egg", "Bee venom", "Grass pollen", "Sésame", "Noix de cajou",
    "Co-trimoxazole",
)  # fmt: skip

# Reactions: (SNOMED-like code as text, description).
REACTIONS: tuple[tuple[str, str], ...] = (
    ("271807003", "Rash"),
    ("267036007", "Dyspnoea"),
    ("39579001", "Anaphylaxis"),
    ("422587007", "Nausea"),
    ("418290006", "Itching"),
    ("267038008", "Œdema of lips and tongue"),
    ("247472004", "Urticaria — widespread weals"),
)

NOTE_SENTENCES: tuple[str, ...] = (
    "Patient prefers to be called by her Welsh name, Siân.",
    "Allergy confirmed by GP — see hospital letter.",
    "Lives alone; carer visits twice daily.",
    "Interpreter required: Tiếng Việt.",
    "Résumé of admission: community-acquired pneumonia, treated with IV antibiotics.",
    "Do not prescribe NSAIDs (renal impairment, eGFR 38).",
    "Next of kin: daughter, Zoë O'Brien, 07700 900123.",
    "Ongoing review by the diabetes nurse; HbA1c 58 mmol/mol.",
    "Has a DNACPR decision in place (see care plan §4).",
    "Uses a hearing aid – speak clearly, face the patient.",  # noqa: RUF001 (as typed)
    "Prefers appointments before 10:00.",
    "Medication reviewed with the practice pharmacist, no changes.",
    "Œsophageal varices noted on endoscopy ½ year ago.",
    "Patient reports 20% improvement in pain scores ≥ 2 weeks after starting treatment.",
)

ADDRESS_USES: tuple[str, ...] = ("H", "H", "H", "T", "W", "B")
TELECOM_SYSTEMS: tuple[str, ...] = ("phone", "phone", "email", "sms")
TELECOM_USES: tuple[str, ...] = ("H", "W", "M", "X")  # "X" has no translation: mapped by default
NAME_USES: tuple[str, ...] = ("P", "P", "M")  # previous, maiden
SEVERITIES: tuple[str, ...] = ("MI", "MO", "SE", "LT")
PRESCRIPTION_STATUSES: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
GENDERS: tuple[str, ...] = ("M", "F", "M", "F", "U", "I")
UTC_OFFSETS: tuple[str, ...] = ("+00:00", "+01:00", "-05:00", "+05:30", "-03:30", "+10:00", "Z")

# Organisation types and their primary role code; secondary roles an organisation may also hold.
ORG_TYPES: tuple[str, ...] = ("ICB", "TR", "GP", "PH")
PRIMARY_ROLE: dict[str, str] = {"ICB": "RO318", "TR": "RO197", "GP": "RO76", "PH": "RO182"}
SECONDARY_ROLES: dict[str, tuple[str, ...]] = {
    "ICB": ("RO98",),
    "TR": ("RO57",),
    "GP": ("RO177", "RO98"),
    "PH": ("RO283", "RO177"),
}
PRICES: tuple[str, ...] = ("12.5", "0.1", "1234.99", "9.9", "0.01", "3", "99.95", "7.35")
QUANTITIES: tuple[str, ...] = ("28", "56", "2.5", "0.125", "100", "1", "7", "14.75")
STRENGTHS: tuple[float, ...] = (0.1, 2.5, 1 / 3, 500.0, 0.0625, 1e-3, 12.75, 2 / 7)
DOSES: tuple[str, ...] = ("500", "20", "2.5", "0.5", "100", "1.25", "40", "10")
