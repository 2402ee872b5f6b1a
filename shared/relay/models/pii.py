"""Normalisation and SHA-256 hashing of personal data, per vendor rule (docs/ingest-api.md, "PII").

A value that already is a SHA-256 hex digest (64 hex characters, any case) is taken as hashed and
passed through in lower case: the relay never hashes a hash.
"""

from __future__ import annotations

import hashlib
import re

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NON_DIGITS = re.compile(r"[^0-9]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


class PhoneError(ValueError):
    """A phone number that cannot be normalised (message never holds the number)."""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def as_sha256(value: str) -> str | None:
    """The lower-case digest when `value` already is a SHA-256 hex digest, else None."""
    v = value.strip().lower()
    return v if _SHA256.fullmatch(v) else None


def normalize_email(value: str) -> str:
    """Trim and lower-case (AppsFlyer, AdRoll and AppLovin/Stape agree on this)."""
    return value.strip().lower()


def looks_like_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(normalize_email(value)))


def normalize_name(value: str) -> str:
    """First/last name: trim and lower-case (AppsFlyer `*_name_hashed`)."""
    return value.strip().lower()


def phone_e164(value: str, country: str | None = None) -> str:
    """Normalise a phone number to E.164 (`+16505551212`) with libphonenumber's rules (the `phonenumbers`
    package), as AppsFlyer's documentation recommends.

    - `+…` or `00…`: international.
    - otherwise, with `country` set: a national number of that country, its trunk prefix handled by the
      country's own rule (Italy keeps its leading 0: `06 1234 5678` is `+390612345678`; Germany's `030 …`
      is `+4930…`).
    - otherwise: AppsFlyer's literal rule, remove symbols, letters and leading zeros; the number must then
      already hold its country code.

    An extension ("ext. 12", "x12", "#12", ";ext=12") is found by libphonenumber's own rule and is not part
    of the number: the same line hashes the same with or without it.

    Only ASCII digits count: a number written with other digits is an error, never silently converted.
    """
    import phonenumbers  # on the first phone only: most events carry none (cold start)
    from phonenumbers.phonenumberutil import _maybe_strip_extension  # libphonenumber's maybeStripExtension

    text = value.strip()
    if any(ch.isdigit() and not ch.isascii() for ch in text):
        raise PhoneError("must be written with the ASCII digits 0-9")
    _extension, text = _maybe_strip_extension(text)
    digits = _NON_DIGITS.sub("", text)
    if text.startswith("+"):
        candidate, region = "+" + digits, None
    elif digits.startswith("00"):
        candidate, region = "+" + digits[2:], None
    elif country:
        candidate, region = digits, country
    else:
        candidate, region = "+" + digits.lstrip("0"), None
    fmt = phonenumbers.PhoneNumberFormat.E164
    try:
        e164 = phonenumbers.format_number(phonenumbers.parse(candidate, region), fmt)
        # read again as international until nothing changes: a national prefix a country's plan left in is
        # dropped (each read may drop one: "+2700000000"), so that normalising the result again gives the
        # result and every form of a number hashes the same; at most one read per digit
        for _ in range(len(e164)):
            again = phonenumbers.format_number(phonenumbers.parse(e164, None), fmt)
            if again == e164:
                break
            e164 = again
    except phonenumbers.NumberParseException:
        e164 = ""
    # E.164's own bounds, not the country's plan: a number the plan does not know is still the client's
    if not 8 <= len(e164) <= 16 or e164[1] == "0":
        raise PhoneError("must be a phone number of 7 to 15 digits including the country code (E.164)")
    return e164


def phone_digits(value: str, country: str | None = None) -> str:
    """Digits only, country code included, no `+` (AppsFlyer `phone_number_hashed`, AppLovin `phone`)."""
    return phone_e164(value, country)[1:]


def hash_email(value: str) -> str:
    norm = normalize_email(value)
    return as_sha256(norm) or sha256_hex(norm)


def hash_name(value: str) -> str:
    norm = normalize_name(value)
    return as_sha256(norm) or sha256_hex(norm)


def hash_phone_digits(value: str, country: str | None = None, e164: str | None = None) -> str:
    """`e164`: the number's phone_e164, when already worked out (libphonenumber's parse is the costly part)."""
    return as_sha256(value) or sha256_hex(e164[1:] if e164 else phone_digits(value, country))


def hash_phone_e164(value: str, country: str | None = None, e164: str | None = None) -> str | None:
    """None when the phone arrived pre-hashed: its format can no longer be changed. `e164`: as above."""
    if as_sha256(value):
        return None
    return sha256_hex(e164 or phone_e164(value, country))
