"""The note tokenizer shipped with the package, and the text clean-up every note gets before it.

The tokenizer is a lower-cased WordPiece vocabulary learned only from non-patient text: the string templates of
the note generator (shipped as ``vocab_corpus.json`` beside this file, never a generated note), a hand-written
list of pulmonary and oncology words, the de-identifier's placeholders and the numbers 0-300. The templates come
as a shipped file, not by reading the generator: the model layer never looks into the cohort package.
``python -m workbench.cohort.note_corpus`` regenerates the file from the templates (a test keeps them equal);
``python -m workbench.models.tokenizer`` rebuilds the tokenizer into ``workbench/models/tokenizer/``. That
rebuild is not reproducible to the token (the WordPiece trainer breaks ties between equally frequent merges in
hash order), so the shipped tokenizer folder, not a rebuild, is what every reader was trained with.

Before tokenizing, :func:`normalize_note` spells numbers the way the encoder reads them: dictated notes say
"sixty-five year old", structured ones "65 y/o"; both become ``65``, and :func:`numeric_values` gives every
whole-number token its value, which the text encoder adds to the token's embedding (age is a Brock term and a
few hundred labelled notes cannot teach eighty separate number tokens an order).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError

TOKENIZER_DIR = Path(__file__).with_name("tokenizer")
VOCAB_CORPUS = Path(__file__).with_name("vocab_corpus.json")  # the note generator's templates
VOCAB_SIZE = 3000
NUMBER_SCALE = 100.0  # token "65" -> value 0.65

MEDICAL_WORDS = ["nodule", "nodules", "pulmonary", "lung", "lungs", "lobe", "lobes", "upper", "lower", "middle", "right", "left", "lingula", "apical", "apex", "basal", "solid", "subsolid", "part-solid", "ground-glass", "ground", "glass", "opacity", "opacities", "spiculated", "spiculation", "lobulated", "smooth", "margin", "margins", "calcified", "calcification", "cavitary", "cavitation", "emphysema", "emphysematous", "centrilobular", "paraseptal", "bullae", "bullous", "copd", "chronic", "obstructive", "disease", "fibrosis", "scarring", "atelectasis", "consolidation", "effusion", "adenopathy", "lymphadenopathy", "mediastinal", "hilar", "nodes", "node", "carcinoma", "adenocarcinoma", "squamous", "malignancy", "malignant", "benign", "metastasis", "metastatic", "metastases", "cancer", "neoplasm", "tumor", "tumour", "mass", "lesion", "lesions", "granuloma", "hamartoma", "biopsy", "bronchoscopy", "navigational", "ebus", "pet", "pet-ct", "fdg", "avid", "suv", "ct", "chest", "scan", "imaging", "radiograph", "x-ray", "cxr", "ldct", "screening", "low-dose", "contrast", "noncontrast", "comparison", "prior", "previous", "interval", "stable", "unchanged", "growth", "grown", "growing", "enlarged", "enlarging", "increased", "decreased", "new", "resolved", "persistent", "follow-up", "surveillance", "fleischner", "lung-rads", "brock", "mayo", "risk", "probability", "guideline", "guidelines", "recommend", "recommended", "recommendation", "smoker", "smoking", "smokes", "nonsmoker", "non-smoker", "never", "former", "current", "active", "quit", "tobacco", "cigarettes", "cigarette", "pack", "pack-year", "pack-years", "packs", "ppd", "vaping", "cessation", "counseling", "nicotine", "replacement", "varenicline", "family", "history", "mother", "father", "brother", "sister", "son", "daughter", "sibling", "parent", "relative", "maternal", "paternal", "denies", "denied", "no", "not", "without", "negative", "positive", "significant", "unremarkable", "noncontributory", "absent", "hypertension", "diabetes", "hyperlipidemia", "depression", "anxiety", "asthma", "bronchitis", "pneumonia", "tuberculosis", "chemotherapy", "radiation", "radiotherapy", "resection", "lobectomy", "wedge", "surgery", "surgical", "treated", "remission", "breast", "prostate", "colon", "colorectal", "melanoma", "renal", "bladder", "thyroid", "ovarian", "cervical", "esophageal", "head", "neck", "year", "years", "old", "month", "months", "week", "weeks", "day", "days", "ago", "since", "age", "aged", "male", "female", "man", "woman", "gentleman", "lady", "mr", "mrs", "ms", "dr", "patient", "pt", "hx", "h/o", "s/p", "w/o", "y/o", "yo", "m", "f", "mm", "cm", "millimeter", "millimeters", "centimeter", "size", "diameter", "measuring", "measures", "measured", "approximately", "about", "dimension", "axial"]

PLACEHOLDER_WORDS = ["[NAME]", "[DATE]", "[MRN]", "[ID]", "[PHONE]", "[EMAIL]", "[ADDRESS]", "[ZIP]", "[SSN]",
                     "[URL]", "[IP]", "[INSTITUTION]"]

_ONES = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"])}
_TENS = {w: 10 * i for i, w in enumerate(["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]) if i >= 2}
_NUM_WORD = "|".join(sorted([*_ONES, *_TENS], key=len, reverse=True))
# "one hundred fifty-three", "sixty-five", "sixty five", "twenty": one match per spelled number.
_SPELLED = re.compile(
    rf"\b(?:(?P<h>{_NUM_WORD})[ -]hundred(?:[ -](?:and[ -])?)?)?"
    rf"(?:(?P<t>{'|'.join(_TENS)})(?:[ -](?P<u>{'|'.join(k for k in _ONES if _ONES[k] < 10 and k != 'zero')}))?"
    rf"|(?P<o>{_NUM_WORD}))?\b",
    re.IGNORECASE,
)


def _spelled_value(m: re.Match[str]) -> str:
    if not m.group(0).strip():
        return m.group(0)
    g = {k: (v.lower() if v else None) for k, v in m.groupdict().items()}
    value = 0
    if g["h"]:
        value += 100 * _ONES.get(g["h"], 0)
    if g["t"]:
        value += _TENS[g["t"]] + (_ONES[g["u"]] if g["u"] else 0)
    elif g["o"]:
        value += _ONES.get(g["o"], _TENS.get(g["o"], 0))
    if g["h"] is None and g["t"] is None and g["o"] is None:
        return m.group(0)
    tail = m.group(0)[len(m.group(0).rstrip()):]
    return f"{value}{tail}"


def normalize_note(text: str) -> str:
    """Spelled numbers to digits ("sixty-five" -> "65"); everything else unchanged.

    >>> normalize_note("a sixty-five year old, BP one hundred fifty-three over eighty-one")
    'a 65 year old, BP 153 over 81'
    """
    return _SPELLED.sub(_spelled_value, text)


def numeric_values(tokenizer: PreTrainedTokenizerFast, ids: torch.Tensor) -> torch.Tensor:
    """(B, L) token ids -> (B, L) float: the number a whole-number token spells, over NUMBER_SCALE; else 0."""
    table = numeric_table(tokenizer)
    return table[ids.clamp(0, len(table) - 1)]


def numeric_table(tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    vocab = tokenizer.get_vocab()
    table = torch.zeros(max(vocab.values()) + 1)
    for token, idx in vocab.items():
        if token.isdigit() and len(token) <= 3:
            table[idx] = int(token) / NUMBER_SCALE
    return table


def _template_corpus() -> list[str]:
    """The note generator's string templates and word lists, as shipped in ``vocab_corpus.json``."""
    try:
        corpus = json.loads(VOCAB_CORPUS.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WorkbenchError(f"{VOCAB_CORPUS}: the tokenizer's vocabulary corpus is missing or broken ({e})") from None
    if not isinstance(corpus, list) or not all(isinstance(t, str) for t in corpus):
        raise WorkbenchError(f"{VOCAB_CORPUS}: not a JSON list of strings")
    return corpus


def training_text() -> list[str]:
    """What the WordPiece trainer reads: templates, the word list and the numbers, normalised, as a sorted set."""
    corpus = _template_corpus() + [" ".join(MEDICAL_WORDS)] * 3 + [" ".join(str(i) for i in range(301))] * 5
    return sorted({normalize_note(t) for t in corpus})


def build_tokenizer(out_dir: str | Path = TOKENIZER_DIR) -> PreTrainedTokenizerFast:
    """Learn the WordPiece vocabulary from non-patient text and save it with ``save_pretrained``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, min_frequency=1, special_tokens=specials,
                                        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz0123456789"))
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)
    fast.add_tokens([t.lower() for t in PLACEHOLDER_WORDS], special_tokens=False)
    with atomic_write(out_dir) as tmp:  # the shipped folder is swapped whole, never left half written
        fast.save_pretrained(str(tmp))
    return fast


def load_tokenizer(path: str | Path = TOKENIZER_DIR) -> PreTrainedTokenizerFast:
    """A tokenizer from a local directory (never the Hub)."""
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)  # type: ignore[return-value]


if __name__ == "__main__":
    t = build_tokenizer()
    print(f"{len(t)} tokens -> {TOKENIZER_DIR}")
