"""
What a nickname is, and when two nicknames are the same.

A nickname is kept in Unicode's NFKC form, trimmed: the compatibility variants
of a letter (full-width, mathematical bold, ligatures) become the letter itself.
It may not contain characters that show nothing, or that break or reorder the
text around them.

Two nicknames are the same when their skeletons are: the confusables skeleton of
Unicode Technical Standard #39 (Unicode Security Mechanisms), taken of the
case-folded form. Look-alikes from other scripts (Cyrillic a, U+0430, for Latin
a), case (ß and ss, İ and i) and canonically equivalent spellings (É composed or
as E + combining acute) give one skeleton, so one cannot pose as another.
"""

import bisect
import functools
import re
import unicodedata

from django.utils.translation import gettext as _

# Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt),
# as first-last ranges: characters a renderer shows as nothing when it has no
# glyph for them. Python's unicodedata does not carry the property. Most are also
# in category C; those that are not are the combining grapheme joiner (U+034F),
# the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0), the Khmer inherent vowels
# (U+17B4, U+17B5) and the variation selectors (U+180B-U+180D, U+180F,
# U+FE00-U+FE0F, U+E0100-U+E01EF), which all pass a category check.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_IGNORABLE_STARTS = [first for first, _last in _DEFAULT_IGNORABLE]

# Blank, though not default-ignorable: fonts draw the braille blank as an empty
# cell, so a name of them (or padded with them) looks empty or like another.
_BLANK = frozenset({"\u2800"})


def _is_default_ignorable(char: str) -> bool:
    code = ord(char)
    index = bisect.bisect_right(_IGNORABLE_STARTS, code) - 1
    return index >= 0 and code <= _DEFAULT_IGNORABLE[index][1]


def is_invisible(char: str) -> bool:
    """Whether the character shows nothing where it stands."""
    return char in _BLANK or _is_default_ignorable(char)


def _is_control(char: str) -> bool:
    # Category C (control, format, surrogate, private use, unassigned) renders
    # invisibly, as a box or reorders the text around it; a line or paragraph
    # separator (Zl, Zp) breaks the name across lines.
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def normalize(name: str) -> str:
    """The nickname as it is kept and shown: NFKC, whitespace trimmed."""
    return unicodedata.normalize("NFKC", name).strip()


def refusal(name: str) -> str | None:
    """Why a (normalised) nickname's characters cannot be used, for people; None
    when they can."""
    if any(is_invisible(char) for char in name):
        return _(
            "A nickname cannot contain invisible characters (such as fillers, "
            "joiners or variation selectors)."
        )
    if any(_is_control(char) for char in name):
        return _("A nickname cannot contain control characters.")
    return None


# confusable_homoglyphs takes the glyphs from the comments of confusables.txt,
# where right-to-left ones are wrapped in LEFT-TO-RIGHT MARKs for display; no
# mapping of TR39 involves that mark.
_DISPLAY_MARK = "\u200e"


@functools.cache
def _prototypes() -> dict[str, str]:
    """
    TR39's confusables mapping: each look-alike character to its prototype.

    confusable_homoglyphs ships the data of confusables.txt as an undirected
    graph, each character with those it can be confused with, so the direction
    is recovered from the shape of TR39's data: there, each source is one code
    point on one line, and a prototype never maps further. A prototype is thus
    a string of several characters, one with several look-alikes, or a character
    of a longer prototype. What is left are lone pairs; of those the source is
    the one the data lists first, as its generator writes a line's source before
    its target (were it the other way round, the pair would still share one
    skeleton).

    Built on first use, not on import (some 40 ms; 1 MB kept, 9 MB while the
    JSON is read): by the database thread, which computes skeletons, never by
    the event loop, which only validates nicknames.
    """
    from confusable_homoglyphs import utils

    graph: dict[str, set[str]] = {}
    for glyph, homoglyphs in utils.load("confusables.json").items():
        graph.setdefault(glyph.replace(_DISPLAY_MARK, ""), set()).update(
            homoglyph["c"].replace(_DISPLAY_MARK, "") for homoglyph in homoglyphs
        )
    order = {glyph: index for index, glyph in enumerate(graph)}
    in_longer = {char for glyph in graph if len(glyph) > 1 for char in glyph}

    def surely_prototype(glyph: str) -> bool:
        return len(glyph) > 1 or len(graph[glyph]) > 1 or glyph in in_longer

    mapping: dict[str, str] = {}
    for glyph, homoglyphs in graph.items():
        if surely_prototype(glyph):
            continue
        (other,) = homoglyphs
        if surely_prototype(other) or order[glyph] < order[other]:
            mapping[glyph] = other
    return mapping


# After case folding, İ is i + U+0307 COMBINING DOT ABOVE: on i and j, which
# carry a dot already (Unicode calls them soft-dotted), it shows as no more.
_DOT_ON_DOTTED = re.compile(r"(?<=[ij])\u0307")

# Rounds of folding and mapping before a name settles: each code point settles in
# at most 4 (tests/unit/test_nicknames.py checks every one).
_MAX_ROUNDS = 8


def _fold_and_map(text: str) -> str:
    folded = unicodedata.normalize(
        "NFD", unicodedata.normalize("NFKC", text).casefold()
    )
    prototypes = _prototypes()
    mapped = "".join(prototypes.get(char, char) for char in folded)
    return _DOT_ON_DOTTED.sub("", unicodedata.normalize("NFD", mapped))


def skeleton(name: str) -> str:
    """
    The form two nicknames share when they look alike: TR39's skeleton (NFD,
    each character replaced by its prototype, NFD again) of the NFKC, case-folded
    name.

    Some prototypes are capitals or compatibility characters (0 maps to O, % to
    º/₀), so folding and mapping repeat until the result no longer changes: b0b
    and BOB then meet at bob, as TR39 has B0B and BOB meet, and the skeleton of a
    skeleton is itself.
    """
    text = name
    for _round in range(_MAX_ROUNDS):
        settled = _fold_and_map(text)
        if settled == text:
            break
        text = settled
    return text
