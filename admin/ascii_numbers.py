"""Numbers typed into back-office forms: ASCII digits only. WTForms' DecimalField hands the
text to Python's Decimal, which also reads other scripts' digits ("٣" is 3) and exponents;
multiples, limits and amounts are typed by people and must read as what they look like."""

from __future__ import annotations

from wtforms import DecimalField, FloatField, IntegerField

from rating.money import MONEY_TEXT

NUMBER_FIELDS = (DecimalField, FloatField, IntegerField)


class AsciiNumbers:
    """Mixin of a WTForms form: a number field whose text is not plain ASCII digits fails."""

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        for field in self:
            raw = (getattr(field, "raw_data", None) or [""])[0]
            if (
                isinstance(field, NUMBER_FIELDS)
                and raw.strip()
                and not MONEY_TEXT.fullmatch(raw.strip())
            ):
                field.errors = [*field.errors, "digits 0-9 and a decimal point only"]
                ok = False
        return ok
