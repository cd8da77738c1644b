"""Exact money: integer minor units with an ISO 4217 currency, formatted without floats."""

from __future__ import annotations

from decimal import Decimal

# ISO 4217 minor-unit exponents that are not 2 (source: the ISO 4217 list, table A.1,
# as published by SIX, the maintenance agency). Every other active code has 2.
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}


#: ISO 4217 codes whose minor unit is "N.A." in table A.1: precious metals (XAU, XAG, XPD,
#: XPT), bond-market and accounting units (XBA-XBD, XDR, XSU, XUA), the testing code XTS and
#: XXX, "no currency". No wedding is paid in them, and no exponent turns their amounts into
#: money: an event or an organisation in one is refused.
NOT_MONEY: frozenset[str] = frozenset(
    ["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"]
)


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point of ``currency`` (2 for EUR, 0 for JPY, 3 for KWD)."""
    return _EXPONENTS.get(currency, 2)


def to_major(amount_minor: int, currency: str) -> Decimal:
    """``amount_minor`` in the currency's major unit, exactly (1160185023 EUR → 11601850.23)."""
    exp = minor_unit_exponent(currency)
    return Decimal(amount_minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))
