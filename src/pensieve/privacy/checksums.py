"""Checksums of the privacy detectors: Luhn (payment cards), ISO 13616 mod-97 (IBANs) and the French NIR key.

Everything here is pure: no I/O, no clock, no shared mutable state.
"""

from __future__ import annotations

# --- checksums -----------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Whether a non-empty string of decimal digits passes the Luhn (mod 10) check of payment card numbers."""
    if not digits.isdecimal():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# IBAN length per country (ISO 13616 registry) for the SEPA area and a few common others.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BR": 29, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18,
    "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def iban_valid(value: str) -> bool:
    """Whether `value` (spaces allowed) is a well-formed IBAN with a correct ISO 13616 mod-97 check."""
    iban = value.replace(" ", "").upper()
    if not 15 <= len(iban) <= 34 or not iban.isascii() or not iban.isalnum():
        return False
    country, check = iban[:2], iban[2:4]
    if not country.isalpha() or not check.isdigit():
        return False
    if _IBAN_LENGTHS.get(country, len(iban)) != len(iban):
        return False
    # Move the first four characters to the end, read letters as 10..35, and take the number mod 97.
    number = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    return int(number) % 97 == 1


def nir_valid(value: str) -> bool:
    """Whether `value` (spaces allowed) is a French NIR whose key is 97 - (first 13 digits mod 97)."""
    nir = value.replace(" ", "").upper()
    if len(nir) != 15 or nir[0] not in "12":
        return False
    body, key = nir[:13], nir[13:]
    # Corsica's departments 2A and 2B count as 19 and 18 in the key computation.
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not (body.isdigit() and key.isdigit() and body.isascii() and key.isascii()):
        return False
    return 97 - int(body) % 97 == int(key)


def digit_count(value: str) -> int:
    return sum(char.isdigit() for char in value)


__all__ = ["digit_count", "iban_valid", "luhn_valid", "nir_valid"]
