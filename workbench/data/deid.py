"""De-identify clinical free text under HIPAA Safe Harbor: PHI becomes typed placeholders.

``deidentify(text)`` replaces the Safe Harbor identifiers (45 CFR 164.514(b)(2)) that occur in notes with
``[NAME]``, ``[DATE]``, ``[MRN]``, ``[ID]``, ``[PHONE]``, ``[EMAIL]``, ``[ADDRESS]``, ``[ZIP]``, ``[SSN]``,
``[URL]``, ``[IP]`` and ``[INSTITUTION]``, and keeps everything a risk model needs: ages up to 89, years on
their own ("s/p lumpectomy 2015"), drug names, doses, vitals, pack-years, "COPD", capitalised clinical words.

How, in three layers (every pattern is bounded, so the whole run is linear in the text's length):

1. **Patterns** for what has a shape: dates in their many spellings, phone numbers, e-mail, SSN, URLs, IPs,
   labelled identifiers ("MRN: ...", "Acc#", "Job #"), unlabelled long or mixed letter-digit identifiers,
   street addresses, "City, ST 12345", ZIP codes and institution names ("St. Brigid Medical Center").
2. **Names from context**: titles (Dr., Mr., Ms., Herr ...), labels ("Patient:", "Re:", "Referring
   physician:", "Signed by:", "cc:"), "Dear ...", sign-offs ("Sincerely,"), credentials ("..., MD"),
   relatives ("her daughter, Ana"), the subject of an age ("Ottavndu is a 64-year-old"), person slots
   ("discussed with <First Last>"), DICOM person names ("KRASINSKI^THALKO"), particles after a cue ("Dr. von
   Weber", "Dr. Anami de la Shirahara"), plus a lexicon of common given names and surnames of many origins
   (``names_lexicon.txt``, case- and accent-insensitive) for names that come with no cue at all. The
   context rules carry names the lexicon lacks (``workbench bench reliability --part deid_baseline``).
3. **Spreading**: a capitalised word next to a found name is part of it ("Maria Okafor"), and a token found
   as a name anywhere in the note is a name everywhere in it (the header's "ZHANG" unmasks the body's
   "Mr. Zhang" and the bare "Zhang").

Ages over 89 (the only ages Safe Harbor removes) become the category "90 or older" inside the sentence:
"92-year-old" -> "90 or older year-old", "age 93" -> "age 90 or older", "ninety-one yo" -> "90 or older yo".
The result reads a little stiffly, but keeps the phrase's grammar and the fact a model needs (very old).

Capitalised words that merely look like names are protected by a stop list (clinical vocabulary, section
headings, drug brands), an ambiguity list (names that are also words: "May", "Per", "Long", "Frank") that
only counts as a name after an explicit cue, and an eponym rule ("Graves disease", "Wilson's disease").

Known limits: a name with no cue, not in the lexicon and never next to a found name survives; so does a
city written outside an address or a "lives in ..." phrase; a name that is also a stop word ("Will") is
only caught through spreading. Free-text dates without a day or month ("last spring") are kept, as Safe
Harbor allows.

The function is pure: no state survives a call (compiled patterns and word lists are module constants).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

__all__ = ["deidentify", "PLACEHOLDERS"]

PLACEHOLDERS = ("NAME", "DATE", "MRN", "ID", "PHONE", "EMAIL", "ADDRESS", "ZIP", "SSN", "URL", "IP", "INSTITUTION")
AGE_CATEGORY = "90 or older"

# When spans overlap, the higher priority names the merged span (an e-mail holds a name; an address a number).
_PRIORITY = {"AGE": 12, "URL": 11, "EMAIL": 11, "IP": 10, "SSN": 9, "PHONE": 8, "DATE": 7, "MRN": 7, "ZIP": 6,
             "ADDRESS": 6, "ID": 5, "INSTITUTION": 4, "NAME": 3}


# ---------------------------------------------------------------------------------------------------------
# word lists


_FOLD_EXTRA = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l", "Ł": "L", "đ": "d",
                             "Đ": "D", "ı": "i", "œ": "oe", "Œ": "OE", "’": "'"})


def _fold(word: str) -> str:
    """Lower-case, accent-free, possessive-free form used for every lookup (García's -> garcia, Søren -> soren)."""
    w = word.translate(_FOLD_EXTRA)
    if w[-2:].lower() == "'s":
        w = w[:-2]
    w = unicodedata.normalize("NFKD", w)
    return "".join(ch for ch in w if not unicodedata.combining(ch)).casefold()


def _load_lexicon() -> frozenset[str]:
    path = Path(__file__).with_name("names_lexicon.txt")
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#"):
            continue
        names.update(_fold(w) for w in line.split())
    return frozenset(names)


NAME_LEXICON: frozenset[str] = _load_lexicon()


def _words(block: str) -> frozenset[str]:
    return frozenset(_fold(w) for w in block.split())


# Never part of a name, whatever the cue: function words, headings, clinical and administrative vocabulary.
STOP_WORDS: frozenset[str] = _words("""
a an the and or but nor if then than that this these those there their theirs they them he she his her hers
him it its we us our ours you your yours i me my mine who whom whose which what when where why how not no yes so
as at by for from in into of off on onto out over per to up via with within without about above after again
against all also am any are be been before being below between both can could did do does doing down during
each few further had has have having here is just more most must now only other ought own same should some such
through too under until very was were will would upon while is isn't doesn't don't didn't won't can't
mr mrs ms miss mx dr drs doctor prof professor sir madam dear re cc bcc attn fax tel ph phone cell mobile email
e-mail address addr zip city state country sincerely regards thanks thank many kind best yours truly warm
faithfully respectfully cordially hello hi note notes dictated transcribed signed electronically reviewed
author job end dictation page report letter consult consultation referral referred referring ref patient pt pts
patients name names dob birth date dates service visit mrn id acc accession account encounter ssn number no nos
age sex gender male female man woman men women gentleman lady boy girl adult child infant yo y/o y.o. years year
old history hx hpi pmh psh fh fhx sh shx ros pe exam examination physical vitals vital vs signs assessment plan
a/p ap impression impressions findings finding recommendation recommendations diagnosis diagnoses problem
problems list chief complaint cc reason indication indications allergies allergy nkda nka medications medication
meds med rx labs lab laboratory results result imaging radiology radiologist study studies technique comparison
comparisons clinical information procedure procedures summary discussion addendum disposition follow followup
follow-up return rtc prn bid tid qid qd qhs daily weekly monthly mg mcg ml kg lb lbs cm mm bp hr rr temp t spo2
o2 sat sats ra bmi wt ht nad ctab rrr heent neck lungs lung chest heart cardiac cv abdomen abd extremities ext
neuro skin psych gu gi msk lymph general constitutional eyes ears nose throat mouth
ct cta ctpa pet pet-ct mri mr xr cxr x-ray xray us ultrasound echo ekg ecg pft pfts spirometry dlco fev1 fvc
biopsy bronchoscopy ebus navigation nodule nodules mass masses lesion lesions opacity opacities pulmonary
pulmonology pulmonologist pulm thoracic respiratory airway airways bronchus bronchi pleura pleural lobe lobes
copd gold emphysema asthma bronchitis pneumonia fibrosis ild ipf cancer carcinoma malignancy malignant benign
neoplasm tumor tumour lymphoma melanoma sarcoma metastasis metastases metastatic adenocarcinoma squamous nsclc
sclc oncology oncologist chemotherapy chemo radiation radiotherapy immunotherapy surgery surgical surgeon
resection lobectomy wedge segmentectomy lumpectomy mastectomy prostatectomy colectomy hemicolectomy nephrectomy
turbt excision cystectomy chemoradiation brachytherapy
htn hld dm t2dm dm2 cad chf afib af osa gerd ckd ckd3 bph oa ra sle hiv hcv hbv tb uti dvt pe cva tia mi pci
cabg esrd hypertension hyperlipidemia diabetes hypothyroidism hyperthyroidism obesity depression anxiety gout
arthritis osteoarthritis osteoporosis stroke anemia
tobacco smoking smoker smokers nonsmoker non-smoker ex-smoker smoked smokes cigarettes cigarette cigars vaping
alcohol etoh drinks drinking drugs ivdu illicit former current currently never quit quitting ppd pack packs
pack-year pack-years pk-yr pk-yrs pkyrs py cessation counseling counseled nicotine varenicline
denies denied deny reports reported reporting states stated notes noted presents presented complains admits
endorses negative positive unremarkable normal abnormal stable unchanged increased decreased enlarged growth
grown new old prior previous recent incidental incidentally interval significant noncontributory
noncontrib concerning suspicious likely unlikely possible probable mild moderate severe acute chronic
well well-appearing appearing alert oriented pleasant comfortable distress clear clubbing cyanosis edema
wheezes wheezing crackles rales rhonchi murmur regular rate rhythm soft tender nontender
cough hemoptysis dyspnea sob fever fevers chills sweats weight loss pain fatigue malaise
discussed reviewed explained recommend recommended consider considered obtain obtained ordered order schedule
scheduled arrange arranged continue continued start started stop stopped check checked monitor repeat
surveillance screening ldct low-dose guideline guidelines recommendations society fleischner brock
lung-rads lungrads herder mcwilliams swensen acr accp bts nccn uspstf
hospital hospitals medical center centre clinic clinics health healthcare system systems department dept
division unit service services program programme institute university college school medicine internal family
primary care critical intensive emergency outpatient inpatient ambulatory office practice group associates
community regional general memorial specialty urgent nursing rehabilitation laboratory pharmacy
consultant attending resident fellow intern nurse physician provider practitioner np pa rn md do phd mbbs
fccp facp frcp mph dnp aprn crnp pa-c m.d.
january february march april june july august september october november december jan feb mar apr jun jul
aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs
fri sat today yesterday tomorrow morning afternoon evening night week weeks month months day days hour hours
daughter son wife husband spouse partner mother father sister brother sibling siblings parent parents child
children family friend caregiver aunt uncle cousin niece nephew grandmother grandfather grandson granddaughter
lives living resides retired works worked employed unemployed married single divorced widowed occasional
social socially alone independently
aspirin lisinopril amlodipine atorvastatin rosuvastatin simvastatin metformin insulin levothyroxine omeprazole
pantoprazole apixaban rivaroxaban warfarin clopidogrel metoprolol carvedilol losartan hydrochlorothiazide
furosemide sertraline escitalopram fluoxetine citalopram trazodone gabapentin allopurinol tamsulosin
prednisone albuterol tiotropium fluticasone budesonide formoterol salmeterol montelukast ipratropium
eliquis xarelto coumadin plavix lipitor crestor zocor norvasc lasix synthroid levoxyl glucophage januvia
jardiance farxiga ozempic trulicity prilosec nexium protonix zoloft lexapro prozac celexa neurontin flomax
spiriva advair symbicort breo trelegy anoro incruse ventolin proair singulair dulera chantix wellbutrin tylenol
advil motrin aleve keytruda tagrisso opdivo imfinzi penicillin sulfa codeine morphine latex iodine contrast
placeholder name date mrn id phone email address zip ssn url ip institution age
colleague colleagues team whom concern everyone all staff sirs
seen saw see sees transferred admitted discharged presented evaluated examined treated followed sent called
visited returned arrived underwent received
sincerely regards
""")

# Names that are also everyday words: a name only after an explicit cue (title, label, relative, credential).
AMBIGUOUS_NAMES: frozenset[str] = _words("""
may june april august summer autumn winter dawn eve joy hope faith grace charity chance destiny precious comfort
amber crystal ruby pearl opal violet holly olive hazel ivy iris jade rose rosa lily daisy penny candy honey
will mark bill frank grant earl dean guy ray art don gene pat sue max miles drew lance angel major rich
young long short little small strong white black brown green gray grey gold silver fine stern
hill wood woods king bell ward cross hall price rice case mass hart fox lamb head hand best
bishop burns chambers walker strand watts stokes ball carr cobb cox day fleming fuller gill goodman
graves hunter mason mills moody moore norman parker parsons perry pierce porter potter powers
sanders skinner slater spencer steele tucker wagner warren weaver webb wheeler barber baker cook carpenter
farmer fisher miller butler brooks banks rhodes holland houston dallas austin jordan georgia virginia
kenya dakota chase hale sharp power rush lane page park comfort
per can do son long van an ha ho ma sun da na lo ye bo jo oh ko tor dag gang bin ion islam dung hung
loan tam thu le du pan jan jun min mac das sat wed
""")

# A name-looking word followed by one of these is an eponym, not a person ("Graves disease", "Wells score").
EPONYM_NOUNS: frozenset[str] = _words("""
disease diseases syndrome syndromes sign signs score scores criteria classification scale stage staging grade
grading model models rule rules test tests maneuver manoeuvre procedure operation technique reflex phenomenon
law equation formula index tube catheter stain virus palsy esophagus oesophagus ulcer tumor tumour lymphoma
sarcoma fracture node nodes cell cells triad pouch line lines position method guideline guidelines society
risk calculator questionnaire classification trial
""")

TITLES: frozenset[str] = _words("dr drs mr mrs ms miss mx prof professor doctor herr frau sr sra srta dra mme mlle "
                                "madame monsieur dame rev")
PARTICLES: frozenset[str] = _words("de del della der den van von da das dos du la le di bin ibn al el ben ter ten "
                                   "dela y o ó ni nic mac mc ui uí")

# ---------------------------------------------------------------------------------------------------------
# patterns (all quantifiers bounded: no catastrophic backtracking on long or hostile input)


def _month_alternatives() -> str:
    names = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")
    alts = []
    for n in names:
        short = n[:3]
        alts += [n, n.upper(), short, short.upper()]
        if n == "September":
            alts += ["Sept", "SEPT"]
    return "|".join(sorted(set(alts), key=len, reverse=True))


_MONTH = rf"(?:{_month_alternatives()})(?![^\W\d_])\.?"
_ORDINAL_WORDS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth", "thirtieth"]
_SPOKEN_DAY = (r"(?:(?:twenty|thirty)[- ](?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|"
               + "|".join(_ORDINAL_WORDS) + ")")
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:1[89]\d{2}|20\d{2})"
_YEAR_ANY = r"(?:1[89]\d{2}|20\d{2}|'\d{2})"

_DATE_PATTERNS: tuple[re.Pattern[str], ...] = (
    # March 14, 2024 / Mar. 14th 2024 / March fourteenth, 2024 / March 14
    re.compile(rf"\b{_MONTH}[ \t]{{1,3}}(?:{_DAY}|{_SPOKEN_DAY})\b(?:,?[ \t]{{1,3}}{_YEAR_ANY}\b)?"),
    # 14 March 2024 / 14-Mar-2024 / 14th of March / 14.MAR.24
    re.compile(rf"\b{_DAY}(?:[ \t]{{1,2}}of)?[ \t\-./]{{1,2}}{_MONTH}(?:,?[ \t\-./]{{1,2}}(?:{_YEAR}|\d{{2}})\b)?"),
    # the fourteenth of March
    re.compile(rf"\b{_SPOKEN_DAY}[ \t]of[ \t]{_MONTH}(?:,?[ \t]{{1,2}}{_YEAR})?"),
    # March 2024 (month and year: more than a year, so PHI)
    re.compile(rf"\b{_MONTH},?[ \t]{{1,2}}{_YEAR}\b"),
    # 2024-03-14 / 2024/3/14 / 2024.03.14 (a time after it is no PHI and stays)
    re.compile(r"(?<![\d/.\-])(?:19|20)\d{2}([-/.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?![\d/\-])"),
    # 20240314 (compact, as DICOM writes it)
    re.compile(r"(?<![\w\-])(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?![\w\-])"),
    # 2024年3月14日 / 2024年3月 (CJK)
    re.compile(r"(?:19|20)\d{2}[ \t]?年[ \t]?\d{1,2}[ \t]?月(?:[ \t]?\d{1,2}[ \t]?[日号])?"),
    # 03/2024 / 3-2024 (month and year)
    re.compile(r"(?<![\d/.\-])(?:0?[1-9]|1[0-2])[/\-](?:19|20)\d{2}(?![\d/\-])"),
)
# 03/14/2024, 3/14/24, 14.03.2024, 03-14-2024: checked for a valid day and month in code.
_NUMERIC_DATE = re.compile(r"(?<![\d/.\-:])(\d{1,2})([/\-.])(\d{1,2})\2(\d{4}|\d{2})(?![\d/\-]|\.\d)")

_EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]{1,64}@[\w\-]{1,63}(?:\.[\w\-]{1,63}){0,8}")
_URL = re.compile(r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]]{1,2048}")
_IP = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\.?\d)")
_SSN = re.compile(r"(?<![\d\-])\d{3}-\d{2}-\d{4}(?![\d\-])")
_SSN_LABELLED = re.compile(r"(?i)\b(?:SSN|SS#|SS[ \t]?No\.?|social[ \t]+security(?:[ \t]+(?:number|no\.?|#))?)"
                           r"[ \t]*[:#]?[ \t]*(\d{3}[ \t\-]?\d{2}[ \t\-]?\d{4})(?!\d)")
_PHONE = re.compile(r"(?<![\w+])(?:\+?1[ \t.\-]?)?(?:\(\d{3}\)[ \t]?|\d{3}[ \t.\-])\d{3}[ \t.\-]\d{4}"
                    r"(?:[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,5})?(?!\d)")
_PHONE_INTL = re.compile(r"(?<![\w+])\+[2-9]\d{0,2}(?:[ \t.\-]?\(?\d{1,4}\)?){2,5}(?!\d)")
_PHONE_LABELLED = re.compile(r"(?i)\b(?:phone|tel|telephone|cell|mobile|fax|ph|pager|callback(?:[ \t]+number)?)"
                             r"\b[^\d\n]{0,15}(\d{10,11})(?!\d)")

_ID_LABEL = re.compile(
    r"(?i)\b(?P<label>MRN|MR[ \t]?#|MR[ \t]?No\.?|MR[ \t]?number|med(?:ical)?[ \t]+rec(?:ord)?s?(?:[ \t]+(?:number|no\.?|#))?"
    r"|record[ \t]+(?:number|no\.?|#)|hospital[ \t]+(?:number|no\.?|#|id)|patient[ \t]+(?:id|number|no\.?|#)"
    r"|pt[ \t]+(?:id|#)|chart[ \t]+(?:number|no\.?|#)|unit[ \t]+number"
    r"|acc(?:ession)?(?:[ \t]*(?:number|no\.?|#))?|account[ \t]*(?:number|no\.?|#)?|acct[ \t]*(?:number|no\.?|#)?"
    r"|encounter[ \t]*(?:id|number|no\.?|#)?|visit[ \t]+(?:id|number|no\.?|#)|CSN|FIN"
    r"|job[ \t]*(?:id|number|no\.?|#)|order[ \t]*(?:id|number|no\.?|#)|specimen[ \t]*(?:id|number|no\.?|#)"
    r"|study[ \t]*(?:id|number|no\.?|#)|insurance[ \t]*(?:id|number|no\.?|#)|member[ \t]*(?:id|number|no\.?|#)"
    r"|policy[ \t]*(?:number|no\.?|#)|group[ \t]*(?:number|no\.?|#)|medicare[ \t]*(?:id|number|no\.?|#)?"
    r"|medicaid[ \t]*(?:id|number|no\.?|#)?|NHS[ \t]*(?:number|no\.?)?|licen[sc]e[ \t]*(?:number|no\.?|#)"
    r"|DEA[ \t]*(?:number|no\.?|#)?|NPI|ID)(?![A-Za-z])"
    r"(?P<sep>[ \t]*(?:[:#=]|no\.?|number)?[ \t]*#?[ \t]*)"
    r"(?P<value>[A-Za-z]{0,4}[\- ]?\d[\dA-Za-z\-]{1,24})"
)
_MRN_LABELS = ("mr", "med", "record", "hospital", "patient", "pt", "chart", "unit")
_ALNUM_ID = re.compile(r"(?<![\w\-/.])[A-Za-z0-9][A-Za-z0-9\-]{4,30}(?![\w\-])")

_STATES = ["AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "DC", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS", "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY", "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV", "WI", "WY", "PR"]
_STATE_NAMES = ("Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
                "Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
                "Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"
                "New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|"
                "South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
                "Wisconsin|Wyoming")
_STATE = rf"(?:{'|'.join(_STATES)}|{_STATE_NAMES})"
_CITY_STATE_ZIP = re.compile(rf"(?<![\w'’.\-])(?P<city>[A-Z][\w'’.\-]{{0,30}}(?:[ \t]{{1,2}}[A-Z][\w'’.\-]{{0,30}}){{0,3}})"
                             rf",?[ \t]{{1,2}}{_STATE}\.?,?[ \t]{{1,2}}(?P<zip>\d{{5}}(?:-\d{{4}})?)(?!\d)")
_CITY_STATE = re.compile(rf"(?<![\w'’.\-])(?P<city>[A-Z][\w'’.\-]{{0,30}}(?:[ \t]{{1,2}}[A-Z][\w'’.\-]{{0,30}}){{0,2}}),"
                         rf"[ \t]{{1,2}}(?:{_STATE_NAMES})\b")
_ZIP_LABELLED = re.compile(r"(?i)\b(?:zip(?:[ \t]*code)?|postal[ \t]+code)[ \t]*:?[ \t]*(\d{5}(?:-\d{4})?)(?!\d)")
_ZIP4 = re.compile(r"(?<![\d\-])\d{5}-\d{4}(?![\d\-])")
_STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Av|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Way|"
                  r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Loop|Row|Plaza|Alley|"
                  r"Crescent|Close|Gardens|Heights|Pike|Turnpike|Route|Rte|Run|Path|Walk|Grove|Commons|Crossing)")
_STREET = re.compile(
    rf"(?<![\w\-/.])\d{{1,6}}[A-Za-z]?(?:[ \t]{{1,2}}(?:[NSEW]\.?|North|South|East|West))?"
    rf"(?:[ \t]{{1,2}}(?:[A-Z][\w'’.\-]{{0,30}}|\d{{1,3}}(?:st|nd|rd|th))){{1,4}}[ \t]{{1,2}}{_STREET_SUFFIX}\b\.?"
    rf"(?:,?[ \t]{{1,2}}(?:Apt|Apartment|Unit|Suite|Ste|Fl|Floor|Rm|Room|Bldg)\.?[ \t]{{0,2}}#?[ \t]{{0,2}}[\w\-]{{1,6}}"
    rf"|[ \t]{{1,2}}#[ \t]?[\w\-]{{1,6}})?"
)
_PO_BOX = re.compile(r"(?i)\bP\.?[ \t]?O\.?[ \t]?Box[ \t]{1,2}\d{1,6}\b")
_LIVES_IN = re.compile(r"(?i)\b(?:lives|living|resides|residing|resident|moved|relocated)[ \t]{1,2}"
                       r"(?:alone[ \t]{1,2}|independently[ \t]{1,2})?(?:in|at|to|from)[ \t]{1,2}(?=[A-Z])")

_INST_KEY = re.compile(r"(?i)\b(?:Hospitals?|Medical[ \t]Cent(?:er|re)|Health[ \t](?:Cent(?:er|re)|System|Care)|"
                       r"Healthcare|Health|Clinics?|Infirmary|Medical[ \t]Group|Institute|Associates|Hospice|"
                       r"Sanatorium|Klinikum|Krankenhaus|Cancer[ \t]Cent(?:er|re)|Practice|Partners)\b")
# Words that make up institution names without naming one: "General Hospital" alone identifies nobody.
_INST_GENERIC: frozenset[str] = _words("""
general regional community memorial university medical center centre health hospital hospitals clinic clinics
pulmonary nodule lung chest thoracic cancer oncology radiology imaging internal medicine family outpatient
inpatient children's women's veterans va department division critical care surgery surgical primary urgent
specialty sleep respiratory smoking cessation service services program the of and for our your his her this
practice partners private group solo
a an at teaching county city state national public mental behavioral rehabilitation heart vascular cardiac
""")
# Stop words that start place names ("New Haven", "Fort Wayne", "Ann Arbor").
_PLACE_PREFIXES: frozenset[str] = _words("new north south east west san santa saint st fort port mount lake el la "
                                         "los las little grand ann upper lower")
_INST_CONNECTORS: frozenset[str] = _words("of the and st saint mount mt san santa")

_AGE_UNIT = re.compile(r"(?i)(?<![\d.,/])(\d{2,3})(-|[ \t]{0,2})(years?[ \t\-]old|year|yrs?[ \t\-]old|yrs?|y/o|"
                       r"y\.o\.?|yo|y)(?![a-z])")
_AGE_LABEL = re.compile(r"(?i)\b(age[ \t]?:|aged|age[ \t]of|age)[ \t]{0,3}(\d{2,3})\b(?![ \t]*(?:or older|\+|%|\.\d))")
_AGE_WORDS = re.compile(r"(?i)\b(ninety(?:[ \t\-](?:one|two|three|four|five|six|seven|eight|nine))?|"
                        r"(?:one[ \t])?hundred(?:[ \t](?:and[ \t])?(?:one|two|three|four|five|six|seven|eight|nine|"
                        r"ten))?)([ \t\-])(years?[ \t\-]old|year|yrs?|yo|y/o)\b")

_TOKEN = re.compile(r"[^\W\d_](?:\w|['’](?=\w)|-(?=\w)){0,60}")
_CRED = re.compile(r",?[ \t]{1,2}(?:M\.D\.|MD|D\.O\.|Ph\.D\.|PhD|MBBS|MBChB|FCCP|FRCP|FACP|DNP|APRN|CRNP|NP|RN|PA-C)"
                   r"(?!\w)|,[ \t]{0,2}(?:DO|PA)\b")
_LABEL_CUE = re.compile(
    r"(?im)(?:^|(?<=[\s(\[;|]))(?=[a-z])(?P<cue>patient(?:'s)?(?:[ \t]+name)?|pt(?:[ \t]+name)?|name|re|subject|"
    r"referring(?:[ \t]+(?:physician|provider|doctor|clinician|md))?|referred[ \t]+by|ref(?:erral)?[ \t]+from|ref|"
    r"pcp|primary[ \t]+care(?:[ \t]+(?:physician|provider))?|attending(?:[ \t]+physician)?|physician|provider|"
    r"surgeon|radiologist|resident|fellow|nurse|author|from|to|attn|attention|cc|c\.c\.|copy[ \t]+to|"
    r"(?:electronically[ \t]+)?signed(?:[ \t]+by)?|dictated[ \t]+by|transcribed[ \t]+by|reviewed[ \t]+by|"
    r"emergency[ \t]+contact|next[ \t]+of[ \t]+kin|nok|guardian|spouse|contact|patient)(?![\w'])"
    r"[ \t]*(?P<colon>:|-)?[ \t]*")
_DEAR = re.compile(r"(?i)\b(?:dear|hello|hi|attn\.?)[ \t]{1,3}")
_SIGNOFF = re.compile(r"(?im)^[ \t]*(?=[a-z])(?:yours[ \t]+sincerely|sincerely(?:[ \t]+yours)?|yours[ \t]+(?:truly|faithfully)|"
                      r"(?:with[ \t]+)?(?:kind|best|warm|warmest|kindest)[ \t]+(?:regards|wishes)|regards|"
                      r"respectfully|cordially|thank[ \t]+you|thanks|best)[ \t]*,?[ \t]*\r?\n(?:[ \t]*\r?\n){0,4}[ \t]*")
_RELATIVE = re.compile(r"(?i)\b(?:wife|husband|spouse|partner|daughter|son|mother|father|sister|brother|niece|"
                       r"nephew|grandson|granddaughter|grandmother|grandfather|friend|caregiver|fianc[ée]e?|aunt|"
                       r"uncle|cousin|mom|dad)(?:,[ \t]{0,2}|[ \t]{1,2})(?:named[ \t]{1,2})?(?=[^\W\d_])")
_ASCII_GAP = re.compile(r"[ \t]{1,2}")
# "<Name> is a 64-year-old" / "... was a sixty-four year old": the subject of an age statement is the patient.
_IS_AGED = re.compile(r"(?i)[ \t]{1,2}(?:is|was)[ \t]{1,2}an?[ \t]{1,2}(?:\d{1,3}|[a-z]{3,9}(?:-[a-z]{3,5})?)"
                      r"[ \t\-]{0,2}(?:year|yr|yo\b|y/o|y\.o\.)")
# "discussed with <First Last>", "accompanied by <First Last>": a person slot, taken only for two-word names
_WITH_PERSON = re.compile(r"(?i)\b(?:discussed|reviewed|spoke|spoken|talked|met|seen|accompanied|visited|called|"
                          r"consented|counseled|counselled)[ \t]{1,2}(?:with|by)[ \t]{1,2}(?=[^\W\d_])")
_BEFORE_ID = re.compile(r"(?i),?[ \t]{0,2}\(?(?:DOB\b|D\.O\.B\.|date[ \t]of[ \t]birth|born[ \t]|MRN\b|MR[ \t]?#|"
                        r"medical[ \t]record|hospital[ \t]number|a(?:ge|ged)?[ \t]\d{1,3}[ \t\-]?(?:year|yo|y/o|y\.o)|"
                        r"\d{1,3}[ \t\-]?(?:year-old|yo\b|y/o)|SSN\b)")


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    label: str
    replacement: str | None = None  # None: "[LABEL]"


# ---------------------------------------------------------------------------------------------------------
# pattern layer


def _valid_numeric_date(a: int, b: int) -> bool:
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


def _pattern_spans(text: str) -> list[_Span]:
    spans: list[_Span] = []
    add = spans.append
    if "@" in text:
        for m in _EMAIL.finditer(text):
            if "." in m.group().split("@", 1)[1]:
                add(_Span(m.start(), m.end(), "EMAIL"))
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:!?":
            end -= 1
        add(_Span(m.start(), end, "URL"))
    for m in _IP.finditer(text):
        add(_Span(m.start(), m.end(), "IP"))
    for m in _SSN.finditer(text):
        add(_Span(m.start(), m.end(), "SSN"))
    for m in _SSN_LABELLED.finditer(text):
        add(_Span(m.start(1), m.end(1), "SSN"))
    for m in _PHONE.finditer(text):
        add(_Span(m.start(), m.end(), "PHONE"))
    for m in _PHONE_INTL.finditer(text):
        if sum(ch.isdigit() for ch in m.group()) >= 8:
            add(_Span(m.start(), m.end(), "PHONE"))
    for m in _PHONE_LABELLED.finditer(text):
        add(_Span(m.start(1), m.end(1), "PHONE"))
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            add(_Span(m.start(), m.end(), "DATE"))
    for m in _NUMERIC_DATE.finditer(text):
        if _valid_numeric_date(int(m.group(1)), int(m.group(3))):
            add(_Span(m.start(), m.end(), "DATE"))
    for m in _ID_LABEL.finditer(text):
        value = m.group("value").rstrip("-")
        if sum(ch.isdigit() for ch in value) < 3:
            continue
        label = m.group("label").lower()
        if label == "id" and m.group("label") not in ("ID", "Id"):
            continue  # the English "id", not an identifier label
        kind = "MRN" if label.startswith(_MRN_LABELS) else "ID"
        add(_Span(m.start("value"), m.start("value") + len(value), kind))
    for m in _ALNUM_ID.finditer(text):
        tok = m.group()
        digits = sum(ch.isdigit() for ch in tok)
        if digits >= 7 or (digits >= 5 and (not tok.isdigit())):
            add(_Span(m.start(), m.end(), "ID"))
    for m in _STREET.finditer(text):
        add(_Span(m.start(), m.end(), "ADDRESS"))
    for m in _PO_BOX.finditer(text):
        add(_Span(m.start(), m.end(), "ADDRESS"))
    for m in _CITY_STATE_ZIP.finditer(text):
        city_start = _trim_city(text, m.start("city"), m.end("city"))
        if city_start < m.end("city"):
            add(_Span(city_start, m.end("city"), "ADDRESS"))
        add(_Span(m.start("zip"), m.end("zip"), "ZIP"))
    for m in _CITY_STATE.finditer(text):
        city_start = _trim_city(text, m.start("city"), m.end("city"))
        if city_start < m.end("city"):
            add(_Span(city_start, m.end("city"), "ADDRESS"))
    for m in _ZIP_LABELLED.finditer(text):
        add(_Span(m.start(1), m.end(1), "ZIP"))
    for m in _ZIP4.finditer(text):
        add(_Span(m.start(), m.end(), "ZIP"))
    return spans


def _trim_city(text: str, start: int, end: int) -> int:
    """Drop leading stop words a city match may have swallowed ("Lives Peoria" -> "Peoria")."""
    pos = start
    for m in _TOKEN.finditer(text, start, end):
        f = _fold(m.group())
        if f in STOP_WORDS and f not in _PLACE_PREFIXES:
            pos = m.end()
            while pos < end and text[pos] in " \t":
                pos += 1
        else:
            break
    return pos


def _age_spans(text: str) -> list[_Span]:
    """Ages over 89 -> "90 or older"; the unit stays, a hyphen after the number becomes a space."""
    spans = []
    for m in _AGE_UNIT.finditer(text):
        if 89 < int(m.group(1)) < 130:
            end = m.end(2) if m.group(2) == "-" else m.end(1)
            spans.append(_Span(m.start(1), end, "AGE", AGE_CATEGORY + (" " if m.group(2) == "-" else "")))
    for m in _AGE_LABEL.finditer(text):
        if 89 < int(m.group(2)) < 130:
            spans.append(_Span(m.start(2), m.end(2), "AGE", AGE_CATEGORY))
    for m in _AGE_WORDS.finditer(text):
        spans.append(_Span(m.start(1), m.end(2), "AGE", AGE_CATEGORY + " "))
    return spans


# ---------------------------------------------------------------------------------------------------------
# token layer: institutions and names


class _Tokens:
    """Word tokens of one text and their features, computed once per call (no state outlives the call)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.words: list[str] = []
        for m in _TOKEN.finditer(text):
            self.starts.append(m.start())
            self.ends.append(m.end())
            self.words.append(m.group())
        self.n = len(self.words)
        feats: dict[str, tuple[str, bool, bool, bool]] = {}  # word -> (fold, title, caps, stop)
        for w in set(self.words):
            f = _fold(w)
            caps = len(w) > 1 and w.isupper()
            stop = f in STOP_WORDS or ("-" in f and all(p in STOP_WORDS for p in f.split("-")))
            feats[w] = (f, w[0].isupper() and not caps, caps, stop)
        self.folds = [feats[w][0] for w in self.words]
        self.title = [feats[w][1] for w in self.words]
        self.caps = [feats[w][2] for w in self.words]
        self.stop = [feats[w][3] for w in self.words]
        # joined[i]: tokens i and i + 1 may belong to one name (a space or two; ". " after an initial)
        self.joined = [_same_line_gap(text[self.ends[i]:self.starts[i + 1]], self.words[i])
                       for i in range(self.n - 1)] + [False]

    def fold(self, i: int) -> str:
        return self.folds[i]

    def gap(self, i: int) -> str:
        """Text between token i and token i + 1."""
        return self.text[self.ends[i]:self.starts[i + 1]] if i + 1 < self.n else ""

    def is_title(self, i: int) -> bool:
        return self.title[i]

    def is_caps(self, i: int) -> bool:
        return self.caps[i]

    def is_stop(self, i: int) -> bool:
        return self.stop[i]

    def candidate(self, i: int, *, caps: bool) -> bool:
        """Could token i be (part of) a name? Capitalised, not a stop word; all-caps only where ``caps``."""
        if not (self.title[i] or (caps and self.caps[i])) or self.stop[i] or self._is_placeholder(i):
            return False
        if len(self.words[i]) == 1:  # an initial: "J. Smith"
            return self.text[self.ends[i]:self.ends[i] + 1] == "." and i + 1 < self.n
        return True

    def _is_placeholder(self, i: int) -> bool:
        s, e = self.starts[i], self.ends[i]
        return s > 0 and self.text[s - 1] == "[" and self.text[e:e + 1] == "]"

    def lexicon_name(self, i: int) -> bool:
        f = self.folds[i]
        if f in AMBIGUOUS_NAMES or self.stop[i]:
            return False
        if f in NAME_LEXICON:
            return True
        if "-" in f:
            return any(p in NAME_LEXICON for p in f.split("-"))
        return len(f) > 3 and f[1] == "'" and f[0] in "odn" and self.words[i][2:3].isupper()  # O'Brien, N'Diaye

    def eponym(self, i: int) -> bool:
        """'Graves disease', "Wilson's disease", 'Wells score': the next word makes it a thing, not a person."""
        j = i + 1
        while j < self.n and j <= i + 2:
            if self.gap(j - 1).strip(" \t-") != "":
                return False
            if self.folds[j] in EPONYM_NOUNS:
                return True
            if not self.title[j] or self.stop[j]:
                return False
            j += 1
        return False

    def first_at_or_after(self, pos: int) -> int:
        """Index of the first token starting at or after ``pos``."""
        return bisect.bisect_left(self.starts, pos)


def _same_line_gap(gap: str, prev_word: str) -> bool:
    """Tokens of one name are separated by a space or two, or '. ' after an initial."""
    if _ASCII_GAP.fullmatch(gap):
        return True
    return len(prev_word) == 1 and gap in (". ", ".", ".  ")


def _run(tok: _Tokens, i: int, *, caps: bool, comma: bool, limit: int = 4) -> list[int]:
    """The name starting at token i: consecutive candidates (particles inside), "Last, First" when ``comma``."""
    out: list[int] = []
    j = i
    used_comma = False
    particles = 0  # particles do not count against ``limit``: "Dr. Anami de la Shirahara" is one name
    while j < tok.n and len(out) - particles < limit:
        if tok.candidate(j, caps=caps):
            out.append(j)
        elif _particles_then_name(tok, j, 1, caps=caps, name=None):
            out.append(j)  # "De la Cruz", "van der Berg", "Ó Súilleabháin"; after a cue also "Dr. von Weber"
            particles += 1
        else:
            break
        gap = tok.gap(j)
        if j + 1 >= tok.n or _CRED.match(tok.text, tok.ends[j]):
            break  # "Anand Patel, M.D.": the credential ends the name (and its letters are no initials)
        if tok.joined[j]:
            j += 1
            continue
        if comma and not used_comma and re.fullmatch(r",[ \t]{0,2}", gap) and tok.candidate(j + 1, caps=caps):
            used_comma = True
            j += 1
            continue
        break
    return out


def _particles_then_name(tok: _Tokens, j: int, step: int, *, caps: bool, name: bytearray | None) -> bool:
    """Is token j a particle ("de", "la", "van", "der") that, with at most two more particles, leads (in
    direction ``step``) to a name or a name candidate? Particles are lower-case words, so they are only
    taken inside or next to a name, never on their own."""
    k = j
    for _ in range(3):
        if not (0 <= k < tok.n and tok.folds[k] in PARTICLES):
            return False
        if (step < 0 and k == 0) or not tok.joined[k if step > 0 else k - 1]:
            return False
        k += step
        if 0 <= k < tok.n and ((name is not None and name[k]) or tok.candidate(k, caps=caps)):
            return True
    return False


def _run_back(tok: _Tokens, i: int, *, limit: int) -> list[int]:
    """The name ending at token i, read backwards (for cues that follow the name: ", MD", ", DOB ...")."""
    got: list[int] = []
    j = i
    while j >= 0 and len(got) < limit:
        particle = bool(got) and tok.fold(j) in PARTICLES and (j == 0 or tok.joined[j - 1] or tok.title[j])
        if not (particle or tok.candidate(j, caps=True)):
            break
        got.append(j)
        if j == 0 or not tok.joined[j - 1]:
            break
        j -= 1
    return got


def _institution_spans(text: str, tok: _Tokens) -> list[_Span]:
    spans = []
    for m in _INST_KEY.finditer(text):
        if not m.group()[0].isupper():
            continue
        k = tok.first_at_or_after(m.start())  # first token of the key
        start, proper = m.start(), 0
        i = k - 1
        steps = 0
        while i >= 0 and steps < 7:
            gap = tok.gap(i)
            if "\n" in gap or not re.fullmatch(r"\.?[ \t]{1,2}|[ \t]{0,2}&[ \t]{0,2}|-", gap):
                break
            f = tok.fold(i)
            if tok.is_title(i) or tok.is_caps(i):
                if f in STOP_WORDS and f not in _INST_GENERIC and f not in _INST_CONNECTORS:
                    break
                if f not in _INST_GENERIC and f not in _INST_CONNECTORS:
                    proper += 1
            elif f not in _INST_CONNECTORS:
                break
            start = tok.starts[i]
            i -= 1
            steps += 1
        # leading connectors ("of", "the") are not part of the name
        while start < m.start():
            j = tok.first_at_or_after(start)
            if j < tok.n and tok.fold(j) in ("of", "the", "and", "for", "at") and tok.starts[j] == start:
                start = tok.starts[j + 1] if j + 1 < tok.n else m.start()
            else:
                break
        end = m.end()
        # "Hospital of Saint Raphael"
        tail = re.match(r"[ \t]of[ \t](?:the[ \t])?((?:(?:St\.|Saint|[A-Z][\w'’\-]{0,30})[ \t]?){1,4})", text[end:end + 120])
        if tail:
            words = [w for w in re.findall(r"[^\W\d_][\w'’\-]*", tail.group(1))]
            if words and any(_fold(w) not in _INST_GENERIC and _fold(w) not in STOP_WORDS for w in words):
                end += tail.end()
                proper += 1
        if proper:
            spans.append(_Span(start, end, "INSTITUTION"))
    return spans


def _name_spans(text: str, tok: _Tokens) -> list[_Span]:
    name = bytearray(tok.n)

    def mark(indices: list[int]) -> None:
        for j in indices:
            name[j] = 1

    # titles: Dr. / Mr / Ms. / Herr ... + name
    for i in range(tok.n - 1):
        if tok.fold(i) in TITLES and (tok.is_title(i) or tok.is_caps(i)):
            gap = tok.gap(i)
            if re.fullmatch(r"\.?[ \t]{1,2}", gap) and "\n" not in gap:
                mark(_run(tok, i + 1, caps=True, comma=False, limit=3))
    # labels: "Patient:", "Re:", "Referring physician:", "cc:" ...
    for m in _LABEL_CUE.finditer(text):
        cue = m.group("cue")
        if cue == "CC" or (m.group("colon") is None and _fold(cue) not in ("patient", "referred by", "signed by",
                                                                             "electronically signed by")):
            continue  # "CC:" is a chief complaint; most labels need their colon
        i = tok.first_at_or_after(m.end())
        if i < tok.n and tok.starts[i] == m.end():
            mark(_run(tok, i, caps=m.group("colon") is not None, comma=m.group("colon") is not None))
    for pattern in (_DEAR, _SIGNOFF):
        for m in pattern.finditer(text):
            i = tok.first_at_or_after(m.end())
            if i < tok.n and tok.starts[i] == m.end():
                if tok.fold(i) in TITLES:
                    continue  # the title rule has it
                mark(_run(tok, i, caps=True, comma=False, limit=3))
    for m in _RELATIVE.finditer(text):
        i = tok.first_at_or_after(m.end())
        if i < tok.n and tok.starts[i] == m.end() and tok.is_title(i):
            mark(_run(tok, i, caps=False, comma=False, limit=2))
    # credentials: "Anand Patel, MD"
    for m in _CRED.finditer(text):
        i = bisect.bisect_left(tok.ends, m.start())
        if i >= tok.n or tok.ends[i] != m.start():
            continue
        mark(_run_back(tok, i, limit=3))
    # next to an identifier: "Tupac Huarachi, DOB ...", "Ana Quispe (MRN ...)", "Li Wei, a 67-year-old"
    for m in _BEFORE_ID.finditer(text):
        i = bisect.bisect_left(tok.ends, m.start())
        if i < tok.n and tok.ends[i] == m.start():
            got = _run_back(tok, i, limit=3)
            if len(got) >= 2 or (got and tok.lexicon_name(got[0])):
                mark(got)
    _context_cues(text, tok, name)
    # lexicon: known names with no cue
    for i in range(tok.n):
        if not name[i] and tok.is_title(i) and tok.lexicon_name(i) and not tok.eponym(i):
            name[i] = 1
        elif not name[i] and tok.is_caps(i) and len(tok.words[i]) > 2 and tok.lexicon_name(i):
            # all-caps only in pairs ("ZHANG HAO", "ZHANG, HAO"): single caps words are acronyms too often
            for j in (i - 1, i + 1):
                if 0 <= j < tok.n and tok.is_caps(j) and not tok.is_stop(j) \
                        and re.fullmatch(r",?[ \t]{1,2}|,", tok.gap(min(i, j))):
                    name[i] = 1
    for _ in range(2):
        _spread(tok, name)
    spans = []
    for i in range(tok.n):
        if name[i]:
            end = tok.ends[i]
            if tok.words[i][-2:] in ("'s", "’s"):
                end -= 2  # keep the possessive: "[NAME]'s wife"
            spans.append(_Span(tok.starts[i], end, "NAME"))
    return spans


def _context_cues(text: str, tok: _Tokens, name: bytearray) -> None:
    """Names that only their slot gives away (issue 20: names the lexicon lacks): "Ottavndu is a 64-year-old",
    "discussed with Eulae Mukhacharya", DICOM person names "KRASINSKI^THALKO^M"."""
    for m in _IS_AGED.finditer(text):
        i = bisect.bisect_left(tok.ends, m.start())
        if i < tok.n and tok.ends[i] == m.start():
            got = _run_back(tok, i, limit=3)
            if got and not tok.eponym(got[0]):
                for j in got:
                    name[j] = 1
    for m in _WITH_PERSON.finditer(text):
        i = tok.first_at_or_after(m.end())
        if i < tok.n and tok.starts[i] == m.end() and tok.fold(i) not in TITLES:
            got = _run(tok, i, caps=False, comma=False, limit=3)
            if sum(tok.folds[j] not in PARTICLES for j in got) >= 2 or (got and tok.lexicon_name(got[0])):
                for j in got:
                    name[j] = 1
    for i in range(tok.n - 1):  # DICOM PN: family^given^middle^prefix^suffix, written with no spaces
        gap = tok.gap(i)
        if gap[:1] == "^" and re.fullmatch(r"\^{1,4}", gap) and not tok._is_placeholder(i) \
                and not tok._is_placeholder(i + 1):
            name[i] = name[i + 1] = 1


def _spread(tok: _Tokens, name: bytearray) -> None:
    """A found name marks its capitalised neighbours, then every other occurrence of itself."""
    for i in range(tok.n):
        if not name[i]:
            continue
        caps = tok.caps[i]
        for step in (1, -1):
            k = i + step
            while 0 <= k < tok.n and abs(k - i) <= 2 and tok.joined[min(k, k - step)]:
                if name[k]:
                    pass
                elif tok.candidate(k, caps=caps) and tok.caps[k] == caps and not tok.eponym(k):
                    name[k] = 1
                elif _particles_then_name(tok, k, step, caps=caps, name=name):
                    name[k] = 1  # "De la Cruz", "Van der Berg", "Anami de la Shirahara"
                else:
                    break
                k += step
    seen = {tok.folds[i] for i in range(tok.n) if name[i]}
    seen = {f for f in seen if len(f) > 1 and f not in STOP_WORDS and f not in PARTICLES}
    if not seen:
        return
    for i in range(tok.n):
        if not name[i] and (tok.title[i] or tok.caps[i]) and tok.folds[i] in seen:
            name[i] = 1


# ---------------------------------------------------------------------------------------------------------
# assembly


def _merge(spans: list[_Span], text: str) -> list[_Span]:
    """Overlapping spans become one, named by the highest-priority label; adjacent name parts join up."""
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s.start, -s.end))
    out = [spans[0]]
    for s in spans[1:]:
        cur = out[-1]
        if s.start < cur.end:
            keep = cur if _PRIORITY[cur.label] >= _PRIORITY[s.label] else s
            start, end = cur.start, max(cur.end, s.end)
            if keep.label == "AGE" and (keep.start, keep.end) != (start, end):
                keep = s if keep is cur else cur  # an age inside a larger identifier: the identifier names it
            same = (keep.start, keep.end) == (start, end)
            out[-1] = _Span(start, end, keep.label, keep.replacement if same else None)
        else:
            out.append(s)
    joined = [out[0]]
    for s in out[1:]:
        cur = joined[-1]
        gap = text[cur.end:s.start]
        last_is_initial = cur.end - cur.start == 1 or not text[cur.end - 2].isalnum()
        initial = last_is_initial and re.fullmatch(r"\.[ \t]{0,2}", gap)  # "J. Smith", not "Patel. Maria"
        if cur.label == s.label == "NAME" and (initial or re.fullmatch(r"[ \t]{1,2}|,[ \t]{0,2}|-", gap)):
            joined[-1] = _Span(cur.start, s.end, "NAME")
        else:
            joined.append(s)
    return joined


def deidentify(text: str) -> str:
    """``text`` with Safe Harbor PHI replaced by typed placeholders (see the module docstring).

    >>> deidentify("Ms. Maria Okafor (MRN 00482913), seen 03/14/2024, is a 67-year-old former smoker.")
    'Ms. [NAME] (MRN [MRN]), seen [DATE], is a 67-year-old former smoker.'
    """
    if not text:
        return text
    tok = _Tokens(text)
    spans = _pattern_spans(text) + _age_spans(text) + _institution_spans(text, tok) + _name_spans(text, tok)
    spans += _lives_in_spans(text, tok)
    pieces: list[str] = []
    pos = 0
    for s in _merge(spans, text):
        pieces.append(text[pos:s.start])
        pieces.append(s.replacement if s.replacement is not None else f"[{s.label}]")
        pos = s.end
    pieces.append(text[pos:])
    return "".join(pieces)


def _lives_in_spans(text: str, tok: _Tokens) -> list[_Span]:
    """'lives in Peoria' / 'resides in San Luis Obispo': a city with no address around it."""
    spans = []
    for m in _LIVES_IN.finditer(text):
        i = tok.first_at_or_after(m.end())
        got: list[int] = []
        while i < tok.n and len(got) < 3 and tok.is_title(i) and (not tok.is_stop(i) or (
                not got and tok.fold(i) in _PLACE_PREFIXES)):
            got.append(i)
            if not _ASCII_GAP.fullmatch(tok.gap(i)):
                break
            i += 1
        if got:
            spans.append(_Span(tok.starts[got[0]], tok.ends[got[-1]], "ADDRESS"))
    return spans
