"""A deterministic crowd of invented people for the demo sources.

Person number n is always the same person (their own seeded generator), so a person can be
in TECS and in EID with the same name, birth date and numbers, and two builds are identical.
Identifiers are unmistakably not real: SSNs in the never-issued 9xx area, A-numbers from
A100000000 up, made-up passports and licences. None equals a demo subject's identifier.
"""
from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from ..domain import PersonRole, ProtectedClass, RecordStatus, RestrictionCategory

_MALE = (
    "JAMES JOHN ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES CHRISTOPHER DANIEL "
    "MATTHEW ANTHONY MARK DONALD STEVEN PAUL ANDREW JOSHUA KENNETH KEVIN BRIAN GEORGE TIMOTHY "
    "RONALD EDWARD JASON JEFFREY RYAN JACOB GARY NICHOLAS ERIC JONATHAN STEPHEN LARRY JUSTIN "
    "SCOTT BRANDON BENJAMIN SAMUEL GREGORY FRANK RAYMOND PATRICK JACK DENNIS JERRY TYLER JOSE "
    "JUAN LUIS CARLOS JESUS MIGUEL ANTONIO FRANCISCO ALEJANDRO PEDRO RAFAEL MANUEL RICARDO "
    "JORGE ROBERTO FERNANDO OMAR MOHAMMED ALI HASSAN WEI JUN HAO MING RAJ ARJUN VIKRAM IVAN "
    "DMITRI OLEG NGUYEN MINH JOHNNY BILL BOB JIM MIKE TONY"
).split()
_FEMALE = (
    "MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN LISA NANCY BETTY "
    "MARGARET SANDRA ASHLEY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA DOROTHY MELISSA DEBORAH "
    "STEPHANIE REBECCA SHARON LAURA CYNTHIA KATHLEEN AMY ANGELA SHIRLEY ANNA BRENDA PAMELA EMMA "
    "NICOLE HELEN SAMANTHA KATHERINE CHRISTINE DEBRA RACHEL CAROLYN JANET MARIA GUADALUPE ROSA "
    "CARMEN ANA SOFIA LUCIA ISABEL VERONICA ELENA ALEJANDRA FATIMA AISHA LEILA MEI XIU YAN "
    "PRIYA ANJALI OLGA NATASHA IRINA LINH THU BETH LIZ JANE"
).split()
# DOE, ROE, SLATE and KARIMI are deliberately absent: a search for a demo subject finds them.
_SURNAMES = (
    "SMITH JOHNSON WILLIAMS BROWN JONES MILLER DAVIS WILSON ANDERSON TAYLOR THOMAS MOORE "
    "JACKSON MARTIN LEE THOMPSON WHITE HARRIS CLARK LEWIS ROBINSON WALKER YOUNG ALLEN KING "
    "WRIGHT SCOTT HILL GREEN ADAMS BAKER NELSON CARTER MITCHELL ROBERTS TURNER PHILLIPS "
    "CAMPBELL PARKER EVANS EDWARDS COLLINS STEWART MORRIS MURPHY COOK ROGERS MORGAN COOPER "
    "PETERSON REED BAILEY BELL KELLY HOWARD WARD COX RICHARDSON WOOD WATSON BROOKS BENNETT GRAY "
    "HUGHES PRICE SANDERS MYERS LONG ROSS FOSTER DOYLE DOWD DOWNS DODGE DOUGLAS DOLAN "
    "GARCIA RODRIGUEZ MARTINEZ HERNANDEZ LOPEZ GONZALEZ PEREZ SANCHEZ RAMIREZ TORRES FLORES "
    "RIVERA GOMEZ DIAZ REYES MORALES CRUZ ORTIZ GUTIERREZ CHAVEZ RAMOS RUIZ ALVAREZ MENDOZA "
    "CASTILLO JIMENEZ MORENO ROMERO HERRERA MEDINA AGUILAR VARGAS GUZMAN MUNOZ SALAZAR GARZA "
    "GARCES GARCIAS GARRIDO CASTRO VASQUEZ ESTRADA SANDOVAL DOMINGUEZ FIGUEROA DELGADO VEGA "
    "CHEN WANG LI ZHANG LIU YANG HUANG ZHAO WU ZHOU XU SUN MA ZHU HU GUO NGUYEN TRAN PHAM "
    "KIM PARK CHOI PATEL SHAH SINGH KUMAR GUPTA SHARMA KHAN AHMED HUSSEIN RAHMAN HADDAD "
    "NASSER MANSOUR IVANOV PETROV SMIRNOV KOWALSKI NOWAK SCHMIDT MULLER OKAFOR MENSAH "
    "O'BRIEN MCDONALD MACDONALD"
).split() + ["DE LA CRUZ", "VAN DYKE", "ST JOHN"]

_STREETS = (
    "MAIN OAK PINE MAPLE CEDAR ELM WASHINGTON LAKE HILL PARK SUNSET RIVERSIDE MISSION CENTRAL "
    "BROADWAY GRANT LINCOLN JEFFERSON MADISON FRANKLIN ADAMS CHURCH SCHOOL MILL SPRING RIDGE "
    "VALLEY CANYON DESERT MESA PALM SAGUARO OCOTILLO ALAMO CAMINO REAL FLORES ROSALES "
    "SPEEDWAY GRAND EUCLID STONE CONGRESS ORACLE PRINCE"
).split()
_SUFFIXES = ("St", "Ave", "Rd", "Dr", "Blvd", "Ln", "Ct", "Way", "Pl")
# (city, state, first ZIP, how many ZIPs, area code)
_CITIES = (
    ("Tucson", "AZ", 85701, 45, "520"), ("Phoenix", "AZ", 85003, 50, "602"),
    ("Nogales", "AZ", 85621, 2, "520"), ("Yuma", "AZ", 85364, 2, "928"),
    ("El Paso", "TX", 79901, 35, "915"), ("Laredo", "TX", 78040, 6, "956"),
    ("Brownsville", "TX", 78520, 6, "956"), ("Houston", "TX", 77002, 90, "713"),
    ("San Antonio", "TX", 78201, 50, "210"), ("Dallas", "TX", 75201, 50, "214"),
    ("San Diego", "CA", 92101, 50, "619"), ("Calexico", "CA", 92231, 1, "760"),
    ("Los Angeles", "CA", 90001, 90, "213"), ("Fresno", "CA", 93701, 30, "559"),
    ("Sacramento", "CA", 95811, 30, "916"), ("Albuquerque", "NM", 87101, 20, "505"),
    ("Las Vegas", "NV", 89101, 50, "702"), ("Denver", "CO", 80202, 40, "303"),
    ("Salt Lake City", "UT", 84101, 20, "801"), ("Seattle", "WA", 98101, 50, "206"),
    ("Portland", "OR", 97201, 30, "503"), ("Chicago", "IL", 60601, 60, "312"),
    ("Minneapolis", "MN", 55401, 20, "612"), ("Atlanta", "GA", 30303, 50, "404"),
    ("Miami", "FL", 33125, 50, "305"), ("New York", "NY", 10001, 90, "212"),
    ("Newark", "NJ", 7102, 12, "973"), ("Boston", "MA", 2108, 30, "617"),
    ("Washington", "DC", 20001, 30, "202"), ("Baltimore", "MD", 21201, 30, "410"),
)
_BIRTH_COUNTRIES = (("US", 50), ("MX", 20), ("GT", 5), ("HN", 5), ("SV", 4), ("CN", 3), ("IN", 3), ("PH", 2), ("CU", 2), ("CO", 2), ("AF", 1), ("IR", 1), ("CA", 2))
_EYES = ("BRO", "BRO", "BRO", "BLU", "HAZ", "GRN", "BLK", "GRY")
_HAIR = ("BLK", "BLK", "BRO", "BRO", "BLN", "RED", "GRY", "WHI", "BAL")
_RACES = ("W", "B", "A", "I", "U")

_TECS_ACTIVITIES = (
    "Secondary inspection referral at port of entry",
    "Undeclared currency above reporting threshold",
    "Narcotics seizure from vehicle compartment",
    "Alien smuggling load vehicle interdiction",
    "Fraudulent travel document presented at primary",
    "Commercial cargo manifest discrepancy",
    "Counterfeit goods seizure in express consignment",
    "Firearms export violation at outbound inspection",
    "Agricultural quarantine violation",
    "Lookout match at primary inspection",
)
_EID_ACTIVITIES = (
    "Illegal reentry after removal",
    "Visa overstay administrative arrest",
    "Criminal alien program encounter at county jail",
    "Fugitive operations team arrest",
    "Notice to appear served after encounter",
    "Worksite enforcement administrative arrest",
)
_NARRATIVES = (
    "Subject stated travel purpose was to visit family; officer noted inconsistent answers.",
    "Subject was cooperative. Vehicle registered to a third party. Referred for further review.",
    "Informant reporting links subject to a smuggling organization; corroboration pending.",
    "Subject declined to answer questions without counsel present.",
    "Subject reported prior entries without inspection. Family members in the United States.",
    "Officer observed nervous behavior; search of luggage found nothing further.",
)
_RESTRICTIONS = tuple(RestrictionCategory)
_EID_PROTECTED = (ProtectedClass.ASYLUM_SEEKER, ProtectedClass.REFUGEE, ProtectedClass.VAWA, ProtectedClass.U_VISA, ProtectedClass.T_VISA)

_IDENTITY_SEED = 0x1E15
_RECORD_SEED = {"TECS": 0x7EC5, "EID": 0xE1D}
DEMO_SSNS = frozenset({"900123456"})


def _weighted(rng: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in choices)
    pick = rng.randrange(total)
    for value, weight in choices:
        pick -= weight
        if pick < 0:
            return value
    return choices[-1][0]  # pragma: no cover


def identity(n: int, avoid: frozenset[tuple[str, str, date]] = frozenset()) -> dict[str, Any]:
    """Person number n: name, birth, body, numbers, home. The same n gives the same person."""
    rng = random.Random(_IDENTITY_SEED * 10_000_019 + n)
    sex = "M" if rng.random() < 0.55 else "F"
    given = rng.choice(_MALE if sex == "M" else _FEMALE)
    middle = rng.choice(_MALE if sex == "M" else _FEMALE) if rng.random() < 0.5 else None
    surname = rng.choice(_SURNAMES)
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(65 * 365))
    while (given, surname, birth) in avoid:
        birth += timedelta(days=1)
    height = rng.randint(64, 76) if sex == "M" else rng.randint(59, 70)
    weight = rng.randint(130, 260) if sex == "M" else rng.randint(100, 210)
    ssn_body = (n * 7919 + 1_234_567) % 100_000_000
    ssn = f"9{ssn_body:08d}" if rng.random() < 0.7 else None
    if ssn in DEMO_SSNS:
        ssn = None
    person: dict[str, Any] = {
        "given_name": given,
        "middle_name": middle,
        "surname": surname,
        "birth_date": birth,
        "height_inches": height,
        "weight_pounds": weight,
        "eye_color": rng.choice(_EYES),
        "hair_color": rng.choice(_HAIR),
        "birthplace_country": _weighted(rng, _BIRTH_COUNTRIES),
        "sex": sex,
        "race": rng.choice(_RACES),
        "ssn": ssn,
        "passport": f"{(n * 104_729 + 3) % 1_000_000_000:09d}" if rng.random() < 0.35 else None,
        "a_number": f"A{100_000_000 + (n * 7919 + 98_765) % 800_000_000:09d}",
        "driver_license": None,
        "driver_license_state": None,
        "street_number": None,
        "street_name": None,
        "secondary_unit": None,
        "city": None,
        "state": None,
        "postal_code": None,
        "country": None,
        "phone": None,
    }
    city, state, first_zip, zips, area = rng.choice(_CITIES)
    if rng.random() < 0.5:
        person["driver_license"] = f"D{(n * 7907 + 11) % 100_000_000:08d}"
        person["driver_license_state"] = state
    if rng.random() < 0.85:
        person.update(
            street_number=str(rng.randint(1, 9999)),
            street_name=f"{rng.choice(_STREETS).title()} {rng.choice(_SUFFIXES)}",
            secondary_unit=f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}" if rng.random() < 0.15 else None,
            city=city,
            state=state,
            postal_code=f"{first_zip + rng.randrange(zips):05d}",
            country="US",
        )
    if rng.random() < 0.6:
        person["phone"] = f"{area}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"
    return person


def tecs_record(index: int, person: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A TECS subject record (without its pk/record id) for crowd member `index`."""
    role = _weighted(rng, ((PersonRole.SUSPECT, 50), (PersonRole.VICTIM, 15), (PersonRole.WITNESS, 15), (PersonRole.OTHER, 20)))
    has_incident = rng.random() < 0.9
    activity_day = date(2005, 1, 1) + timedelta(days=rng.randrange(19 * 365))
    record = {
        **{k: v for k, v in person.items() if k != "a_number"},
        "status": RecordStatus.OPEN.value if rng.random() < 0.3 else RecordStatus.CLOSED.value,
        "role": str(role),
        "restrictions": rng.choice(_RESTRICTIONS).value if rng.random() < 0.05 else None,
        "protected_classes": ProtectedClass.VICTIM_OR_WITNESS.value
        if role in (PersonRole.VICTIM, PersonRole.WITNESS) and rng.random() < 0.3
        else None,
        "activity_number": f"TC{activity_day.year}{index:08d}" if has_incident else None,
        "activity_description": rng.choice(_TECS_ACTIVITIES) if has_incident else None,
        "activity_date": activity_day if has_incident else None,
        "narrative": rng.choice(_NARRATIVES) if rng.random() < 0.4 else None,
    }
    return record


def eid_record(index: int, person: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """An EID arrest (70%) or person record (without pk/record id/photo) for crowd member `index`."""
    arrest = rng.random() < 0.7
    activity_day = date(2005, 1, 1) + timedelta(days=rng.randrange(19 * 365))
    return {
        **person,
        "kind": "arrest" if arrest else "person",
        "status": RecordStatus.OPEN.value if rng.random() < 0.15 else RecordStatus.CLOSED.value,
        "role": (PersonRole.ARRESTEE if arrest else PersonRole.SUBJECT).value,
        "a_number": person["a_number"] if rng.random() < 0.9 else None,
        "encounter_id": f"EN{activity_day.year}{index:09d}" if rng.random() < 0.8 else None,
        "restrictions": rng.choice(_RESTRICTIONS).value if rng.random() < 0.02 else None,
        "protected_classes": rng.choice(_EID_PROTECTED).value if rng.random() < 0.08 else None,
        "activity_number": f"EV{activity_day.year}{index:08d}" if arrest else None,
        "activity_description": rng.choice(_EID_ACTIVITIES) if arrest else None,
        "activity_date": activity_day if arrest else None,
        "narrative": rng.choice(_NARRATIVES) if rng.random() < 0.5 else None,
    }


def record_rng(source: str) -> random.Random:
    """The record-attribute stream of one source (roles, statuses...), separate from identities."""
    return random.Random(_RECORD_SEED[source])
