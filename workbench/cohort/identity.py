"""Fake but realistic PHI for one synthetic patient: names, dates, identifiers, contacts, address, hospital.

Everything here is invented so that de-identification has something real-looking to find. Safety choices:
phone numbers use the fictional 555-01xx range, e-mail addresses the reserved ``example.*`` domains, and
social security numbers the 9xx area that the SSA never issues. Name lists are written out below: first
names by sex and surnames of many origins (hyphenated, with apostrophes and accents), so that a
de-identifier cannot get away with an ASCII-only, Anglo-only view of names. Words that double as English or
clinical words ("Young", "Hope", "May", "Ward") are left out on purpose: a leak check that searches the
de-identified note for the name would otherwise fire on ordinary prose.

Each site writes its record numbers in one house format (picked from the site's name with a stable hash),
as real hospitals do: "00482913", "A-448-201", "4829130042", ...
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np

from workbench.cohort.spec import PatientIdentity, SiteProfile

FEMALE_FIRST: tuple[str, ...] = (
    "Maria", "Elena", "Sofia", "Lucia", "Carmen", "Rosa", "Guadalupe", "Ximena", "Valentina", "Catalina",
    "Linda", "Barbara", "Patricia", "Susan", "Margaret", "Dorothy", "Deborah", "Karen", "Nancy", "Sandra",
    "Elizabeth", "Jennifer", "Michelle", "Kimberly", "Donna", "Carol", "Sharon", "Cynthia", "Kathleen", "Janet",
    "Mei", "Xiu", "Ling", "Yuki", "Haruka", "Aiko", "Min-ji", "Seo-yeon", "Thuy", "Linh",
    "Priya", "Ananya", "Lakshmi", "Deepa", "Sunita", "Fatima", "Aisha", "Zainab", "Leila", "Yasmin",
    "Chidinma", "Ngozi", "Amara", "Adaeze", "Folasade", "Wanjiru", "Abena", "Nia", "Imani", "Keisha",
    "Ingrid", "Astrid", "Sigrid", "Anneliese", "Brigitte", "Françoise", "Amélie", "Chiara", "Giulia", "Francesca",
    "Olga", "Svetlana", "Natalia", "Agnieszka", "Katarzyna", "Zofia", "Ioana", "Eleni", "Despina", "Miriam",
    "Siobhan", "Aoife", "Niamh", "Bridget", "Colleen", "Ruth", "Esther", "Judith", "Naomi", "Rebecca",
    "Ayşe", "Elif", "Zeynep", "Noor", "Shirin", "Parisa", "Leilani", "Malia", "Teresa", "Gloria",
    # rarer names, to check that de-identification does not lean on a list of common ones
    "Xochitl", "Itzel", "Nayeli", "Saoirse", "Thandeka", "Aigerim", "Pema", "Ngaire", "Keziah", "Oluwadamilola",
)

MALE_FIRST: tuple[str, ...] = (
    "José", "Juan", "Carlos", "Luis", "Miguel", "Alejandro", "Javier", "Héctor", "Ramón", "Joaquín",
    "James", "Robert", "John", "Michael", "William", "David", "Richard", "Thomas", "Charles", "Joseph",
    "Daniel", "Anthony", "Steven", "Kenneth", "Kevin", "Brian", "Gregory", "Raymond", "Dennis", "Walter",
    "Wei", "Jian", "Hao", "Hiroshi", "Takeshi", "Kenji", "Min-jun", "Ji-hoon", "Duc", "Minh",
    "Rajesh", "Arjun", "Sanjay", "Vikram", "Anil", "Mohammed", "Ahmed", "Omar", "Tariq", "Yusuf",
    "Chukwuemeka", "Oluwaseun", "Kwame", "Kofi", "Tendai", "Babajide", "Darnell", "Tyrone", "Jamal", "Malik",
    "Lars", "Henrik", "Søren", "Jürgen", "Klaus", "Dieter", "François", "Étienne", "Giuseppe", "Lorenzo",
    "Dmitri", "Sergei", "Piotr", "Tomasz", "Bogdan", "Nikos", "Giorgos", "Andrei", "Levente", "Matthias",
    "Seamus", "Padraig", "Declan", "Cormac", "Eamon", "Samuel", "Isaac", "Abraham", "Benjamin", "Nathan",
    "Mehmet", "Emre", "Cem", "Reza", "Dariush", "Keoni", "Kalani", "Francisco", "Ernesto", "Arturo",
    "Tupac", "Nurlan", "Bolat", "Tenzin", "Dorji", "Tavita", "Anselmo", "Eyvind", "Radoslav", "Oluwadamilare",
)

LAST_NAMES: tuple[str, ...] = (
    # Hispanic / Latin American, some compound
    "García", "Rodríguez", "Hernández", "López", "Martínez", "González", "Pérez", "Sánchez", "Ramírez", "Flores",
    "Gutiérrez", "Castillo", "Vargas", "Morales", "Ortiz", "Delgado", "Navarro", "Fuentes", "Quintero", "Salazar",
    "García-López", "Ruiz-Torres", "Méndez-Ochoa", "De la Cruz", "Ibáñez", "Villanueva",
    # English / Scottish / Irish / Welsh, incl. apostrophes
    "Smith", "Johnson", "Williams", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Thompson", "Harris",
    "Robinson", "Walker", "Wright", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner", "Collins",
    "O'Brien", "O'Connor", "O'Sullivan", "O'Neill", "McCarthy", "MacDonald", "Fitzgerald", "Gallagher",
    "Kavanagh", "Doherty", "Llewellyn", "Pritchard", "Murphy", "Sullivan", "Kennedy", "Sutherland",
    # East / Southeast Asian
    "Nguyen", "Tran", "Pham", "Huynh", "Vo", "Dang", "Chen", "Wang", "Zhang", "Liu",
    "Huang", "Zhou", "Li", "Wu", "Lin", "Tanaka", "Watanabe", "Yamamoto", "Nakamura", "Kobayashi",
    "Kim", "Park", "Choi", "Jeong", "Kang", "Ng", "Tan", "Lim", "Santos", "Reyes", "Bautista", "Dela Rosa",
    # South Asian / Middle Eastern
    "Patel", "Shah", "Sharma", "Gupta", "Iyer", "Reddy", "Chatterjee", "Banerjee", "Krishnan", "Venkataraman",
    "Singh", "Kaur", "Malhotra", "Khan", "Hussain", "Rahman", "Al-Sayed", "Haddad", "Nasser", "Khoury",
    "Farahani", "Mohammadi", "Hosseini", "Yilmaz", "Öztürk", "Demir", "Cohen", "Levy", "Friedman", "Katz",
    # African / African American
    "Okafor", "Okonkwo", "Adeyemi", "Oyelaran", "Nwosu", "Mensah", "Asante", "Boateng", "Mwangi", "Kamau",
    "Ndiaye", "N'Diaye", "Diallo", "Traoré", "Mbeki", "Washington", "Jefferson", "Banks", "Coleman", "Jenkins",
    # European
    "Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schäfer", "Köhler", "Zimmermann",
    "Dubois", "Lefèvre", "Moreau", "Girard", "D'Angelo", "Russo", "Esposito", "Bianchi", "Romano", "Colombo",
    "Kowalski", "Nowak", "Wiśniewski", "Ivanov", "Petrov", "Popescu", "Horváth", "Novák", "Papadopoulos",
    "Jansen", "De Vries", "Van der Berg", "Van Dijk", "Johansson", "Andersson", "Nielsen", "Hansen", "Lindqvist",
    "Kealoha", "Kahananui", "Begay", "Yazzie", "Tsosie",
    # rarer surnames (see the rarer given names above)
    "Quispe", "Mamani", "Huarachi", "Nurmagambetov", "Tsering", "Wangchuk", "Rakotomalala", "Andrianarivo",
    "Tuimavave", "Bjørnstad", "Øvergaard", "Szczepańska", "Dźwigała", "Nakashima-Reyes", "Ó Súilleabháin",
)

# US cities with their state; the state is no PHI under Safe Harbor, the city is.
CITIES: tuple[tuple[str, str, str], ...] = (  # (city, state, first three ZIP digits)
    ("Springfield", "MA", "011"), ("Worcester", "MA", "016"), ("Lowell", "MA", "018"), ("Providence", "RI", "029"),
    ("Hartford", "CT", "061"), ("New Haven", "CT", "065"), ("Albany", "NY", "122"), ("Syracuse", "NY", "132"),
    ("Rochester", "NY", "146"), ("Scranton", "PA", "185"), ("Harrisburg", "PA", "171"), ("Allentown", "PA", "181"),
    ("Wilmington", "DE", "198"), ("Baltimore", "MD", "212"), ("Richmond", "VA", "232"), ("Roanoke", "VA", "240"),
    ("Durham", "NC", "277"), ("Asheville", "NC", "288"), ("Savannah", "GA", "314"), ("Macon", "GA", "312"),
    ("Gainesville", "FL", "326"), ("Tampa", "FL", "336"), ("Knoxville", "TN", "379"), ("Chattanooga", "TN", "374"),
    ("Lexington", "KY", "405"), ("Dayton", "OH", "454"), ("Akron", "OH", "443"), ("Toledo", "OH", "436"),
    ("Ann Arbor", "MI", "481"), ("Grand Rapids", "MI", "495"), ("Fort Wayne", "IN", "468"), ("Peoria", "IL", "616"),
    ("Madison", "WI", "537"), ("Duluth", "MN", "558"), ("Des Moines", "IA", "503"), ("Omaha", "NE", "681"),
    ("Wichita", "KS", "672"), ("Tulsa", "OK", "741"), ("Little Rock", "AR", "722"), ("Baton Rouge", "LA", "708"),
    ("San Antonio", "TX", "782"), ("El Paso", "TX", "799"), ("Lubbock", "TX", "794"), ("Albuquerque", "NM", "871"),
    ("Tucson", "AZ", "857"), ("Boise", "ID", "837"), ("Spokane", "WA", "992"), ("Eugene", "OR", "974"),
    ("Sacramento", "CA", "958"), ("Fresno", "CA", "937"), ("San Luis Obispo", "CA", "934"), ("Reno", "NV", "895"),
    ("Santa Fe", "NM", "875"), ("Fort Collins", "CO", "805"), ("Bozeman", "MT", "597"), ("Anchorage", "AK", "995"),
    ("Hilo", "HI", "967"), ("Burlington", "VT", "054"), ("Bangor", "ME", "044"), ("Manchester", "NH", "031"),
)
CITY_STATE: dict[str, str] = {c: s for c, s, _ in CITIES}

STREET_NAMES: tuple[str, ...] = (
    "Maple", "Oak", "Elm", "Cedar", "Pine", "Birch", "Willow", "Chestnut", "Sycamore", "Magnolia",
    "Washington", "Lincoln", "Jefferson", "Franklin", "Madison", "Highland", "Lakeview", "Riverside", "Hillcrest",
    "Sunset", "Prospect", "Orchard", "Meadowbrook", "Cherry Blossom", "Martin Luther King Jr", "Old Mill",
    "Quarry", "Harbor", "Fairmount", "Beacon", "Juniper", "Aspen", "Cottonwood", "Mesa Verde", "El Camino",
    "Calle Sol", "Rue Laurier", "Kamehameha", "Bayou", "Tamarack",
)
STREET_SUFFIXES: tuple[str, ...] = (
    "St", "Street", "Ave", "Avenue", "Rd", "Road", "Blvd", "Lane", "Ln", "Dr", "Drive", "Ct", "Court", "Way",
    "Pl", "Place", "Terrace", "Circle", "Pkwy", "Trail",
)

INSTITUTIONS: tuple[str, ...] = (
    "St. Brigid Medical Center", "Mercy Valley Hospital", "Riverside Regional Medical Center",
    "Northgate University Hospital", "Lakeshore Community Hospital", "Holy Cross Medical Center",
    "Bayview General Hospital", "Providence Ridge Health", "Saint Anselm Hospital", "Cedar Hollow Medical Center",
    "Kessler-Whitmore Memorial Hospital", "University of Eastbrook Medical Center",
)

EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net", "mail.example", "inbox.example")

AREA_CODES: tuple[str, ...] = ("617", "508", "413", "212", "718", "315", "215", "412", "410", "804", "919", "404",
                               "813", "615", "859", "614", "313", "312", "608", "612", "515", "402", "316", "918",
                               "504", "210", "915", "505", "520", "208", "509", "541", "916", "559", "775", "303")


def pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    """One element of ``seq`` as a plain ``str`` (``rng.choice`` would hand back a numpy string)."""
    return seq[int(rng.integers(len(seq)))]


def person_name(rng: np.random.Generator, *, female: bool | None = None) -> tuple[str, str]:
    """(first, last) of a random person; used for patients, physicians and relatives alike."""
    if female is None:
        female = bool(rng.random() < 0.5)
    return pick(rng, FEMALE_FIRST if female else MALE_FIRST), pick(rng, LAST_NAMES)


def site_code(site: SiteProfile) -> int:
    """A stable number per site name (crc32, not ``hash``: that one changes with every interpreter)."""
    return zlib.crc32(site.name.encode("utf-8"))


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, size=n))


def _mrn(rng: np.random.Generator, site: SiteProfile) -> str:
    """The site's house format; the label ("MRN", "MR#") is the note's business, not the identifier's."""
    fmt = site_code(site) % 5
    if fmt == 0:
        return f"00{_digits(rng, 6)}"  # zero-padded 8 digits
    if fmt == 1:
        return f"{chr(ord('A') + int(rng.integers(0, 26)))}-{_digits(rng, 3)}-{_digits(rng, 3)}"
    if fmt == 2:
        return f"{int(rng.integers(1, 10))}{_digits(rng, 9)}"  # 10 digits
    if fmt == 3:
        letters = "".join(chr(ord("A") + int(i)) for i in rng.integers(0, 26, size=2))
        return f"{letters}{_digits(rng, 7)}"
    return f"{int(rng.integers(1, 10))}{_digits(rng, 8)}"  # 9 digits


def _accession(rng: np.random.Generator, site: SiteProfile, visit: date) -> str:
    fmt = (site_code(site) // 5) % 3
    if fmt == 0:
        return f"CT{visit.year % 100:02d}-{_digits(rng, 6)}"
    if fmt == 1:
        return f"ACC{_digits(rng, 9)}"
    return f"{visit.year}{_digits(rng, 8)}"  # 12 digits


def _phone(rng: np.random.Generator) -> str:
    area, line = pick(rng, AREA_CODES), f"01{_digits(rng, 2)}"
    return pick(rng, (f"({area}) 555-{line}", f"{area}-555-{line}", f"{area}.555.{line}",
                      f"+1 {area} 555 {line}", f"{area} 555 {line}", f"1-{area}-555-{line}"))


def _ascii(s: str) -> str:
    import unicodedata

    plain = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _email(rng: np.random.Generator, first: str, last: str, birth: date) -> str:
    f, last_ = _ascii(first), _ascii(last)
    user = pick(rng, (f"{f}.{last_}", f"{f[0]}{last_}", f"{f}{last_[:1]}{birth.year % 100:02d}",
                      f"{last_}.{f}{int(rng.integers(1, 99))}", f"{f}_{last_}"))
    return f"{user}@{pick(rng, EMAIL_DOMAINS)}"


def _birth_date(rng: np.random.Generator, age: int, visit: date) -> date:
    """A birth date that makes the patient exactly ``age`` on ``visit`` (29 February avoided)."""
    # Birthday falls somewhere in the year before the visit: 0..364 days before the visit's date, shifted back
    # by ``age`` years; that keeps the completed-years age exact.
    days_back = int(rng.integers(0, 365))
    anniversary = date.fromordinal(visit.toordinal() - days_back)
    year = anniversary.year - age
    day = min(anniversary.day, 28) if anniversary.month == 2 else anniversary.day
    return date(year, anniversary.month, day)


def age_on(birth: date, when: date) -> int:
    """Completed years between ``birth`` and ``when``."""
    return when.year - birth.year - ((when.month, when.day) < (birth.month, birth.day))


def make_identity(rng: np.random.Generator, site: SiteProfile, *, age: int, female: bool,
                  visit_date: date) -> PatientIdentity:
    """A fake patient of ``site``: name by sex, a birth date that gives ``age`` on ``visit_date``, the site's
    record-number format, contacts, a home address and the referring physician."""
    first, last = person_name(rng, female=female)
    birth = _birth_date(rng, age, visit_date)
    city, _state, zip3 = CITIES[int(rng.integers(len(CITIES)))]
    zip_code = f"{zip3}{_digits(rng, 2)}"
    if rng.random() < 0.2:
        zip_code += f"-{_digits(rng, 4)}"
    street = f"{int(rng.integers(1, 9999))} {pick(rng, STREET_NAMES)} {pick(rng, STREET_SUFFIXES)}"
    if rng.random() < 0.25:
        street += pick(rng, (f" Apt {int(rng.integers(1, 40))}{pick(rng, ('', 'A', 'B', 'C'))}",
                             f" Unit {int(rng.integers(1, 300))}", f" #{int(rng.integers(1, 30))}"))
    doc_first, doc_last = person_name(rng)
    return PatientIdentity(
        first_name=first,
        last_name=last,
        sex="F" if female else "M",
        birth_date=birth,
        visit_date=visit_date,
        mrn=_mrn(rng, site),
        accession=_accession(rng, site, visit_date),
        phone=_phone(rng),
        email=_email(rng, first, last, birth),
        street=street,
        city=city,
        zip_code=zip_code,
        ssn=f"9{_digits(rng, 2)}-{_digits(rng, 2)}-{_digits(rng, 4)}",
        physician=f"{doc_first} {doc_last}",
        institution=INSTITUTIONS[site_code(site) % len(INSTITUTIONS)],
    )


def sample_visit_date(rng: np.random.Generator) -> date:
    """A visit (study and note) date between 2019 and 2025."""
    return date(2019, 1, 1) + timedelta(days=int(rng.integers(0, 7 * 365)))
