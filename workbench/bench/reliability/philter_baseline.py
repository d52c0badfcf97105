"""The outside baseline for de-identification: philter-lite (UCSF Philter's maintained fork), run offline.

Philter masks every character of what it takes for PHI with ``*`` and keeps what its whitelists and
regular expressions vouch for. Stock philter-lite POS-tags each note with ``nltk.pos_tag``, whose model
(``averaged_perceptron_tagger_eng``) NLTK downloads at run time: with no network that raises
``LookupError`` and philter tags nothing. So the stock run is tried first, and if it fails for that reason
the tagger is swapped, for the duration of each call, for the Penn-Treebank tagger that ships inside
``textblob`` (a Brill lexicon plus rules, no download). Philter's filters, whitelists, configuration
(``philter_delta.toml``, its default) and masking are untouched; only who assigns the POS tags changes, and
the detail says so.

Other de-identifiers tried while choosing (recorded in the detail):
- scrubadub 2.0.1: its one name detector (``TextBlobNameDetector``) needs NLTK's ``punkt_tab`` sentence model,
  another run-time download; without it only e-mail/phone/URL detectors run, which find no names at all.
- presidio-analyzer: finds names only through a spaCy English model that is downloaded separately (the brief
  rules that out; unofficial re-uploads of spaCy models on the package index were not used).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
from collections.abc import Callable
from typing import Any

OTHERS_TRIED = {
    "scrubadub 2.0.1": "name detector (TextBlobNameDetector) needs NLTK's punkt_tab data, downloaded at run time; "
                       "offline only its regex detectors (e-mail, phone, URL, SSN) run, and they find no names",
    "presidio-analyzer": "names come only from a spaCy English model downloaded separately; not used",
}


def load_philter() -> tuple[Callable[[str], str] | None, dict[str, Any]]:
    """(de-identify function, what was run and how) or (None, why not): never raises for a missing package."""
    info: dict[str, Any] = {"name": "philter-lite", "others_tried": OTHERS_TRIED}
    try:
        philter_lite = importlib.import_module("philter_lite")
        philter = importlib.import_module("philter_lite.philter")
    except ImportError as exc:
        info["reason"] = f"philter-lite is not importable ({exc}); it comes with the dev extra"
        return None, info
    info["version"] = importlib.metadata.version("philter-lite")
    config = importlib.resources.files("philter_lite") / "configs" / "philter_delta.toml"
    info["config"] = "philter_lite/configs/philter_delta.toml (its default)"
    filters = philter_lite.load_filters(str(config))
    info["n_filters"] = len(filters)
    get_pos: Callable[[str], list[tuple[str, str]]] | None = None
    try:
        philter_lite.detect_phi("Seen by Dr. Smith on 01/02/2020.", filters)
        info["tagger"] = "nltk.pos_tag (stock)"
    except LookupError as exc:
        info["stock_run"] = "failed: " + next((ln.strip() for ln in str(exc).splitlines() if "Resource" in ln),
                                              str(exc)[:200])
        try:
            tb = importlib.import_module("textblob.en")
        except ImportError as exc2:
            info["reason"] = f"stock philter-lite needs NLTK data downloaded at run time, and textblob (the " \
                             f"offline stand-in tagger) is not importable ({exc2})"
            return None, info
        info["tagger"] = (f"textblob {importlib.metadata.version('textblob')} Penn-Treebank tagger (bundled "
                          "lexicon, offline) in place of nltk.pos_tag; filters and masking unchanged")

        def get_pos(text: str) -> list[tuple[str, str]]:
            tokens = philter._get_clean(text)  # philter's own tokens, whitespace runs included, as it tags them
            return [(t, tag) for t, (_w, tag) in zip(tokens, tb.parser.find_tags(tokens), strict=True)]

    def clean(text: str) -> str:
        if get_pos is None:
            include, _, _ = philter_lite.detect_phi(text, filters)
            return str(philter_lite.transform_text_asterisk(text, include))
        stock = philter._get_pos  # detect_phi looks it up in its module at each call: swapped for this call only
        setattr(philter, "_get_pos", get_pos)  # noqa: B010 (a module attribute mypy cannot see through)
        try:
            include, _, _ = philter_lite.detect_phi(text, filters)
        finally:
            setattr(philter, "_get_pos", stock)  # noqa: B010
        return str(philter_lite.transform_text_asterisk(text, include))

    return clean, info
