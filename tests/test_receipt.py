"""The check-out receipt's arithmetic with exact expected values (workers/receipt.py)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from ops.errors import InvalidInput
from workers.receipt import Extra, Line, compute


def test_free_line_discount_extra_rounding_and_change():
    lines = [Line(D("1.234567")), Line(D("0.80"), free=True), Line(D("2.10"), hidden=True)]
    r = compute(
        lines,
        discount_percent=D("10"),
        extras=[Extra("coffee", D("1.50"))],
        step=D("0.05"),
        paid=D("20"),
    )
    assert r.calls == D("3.334567")  # the hidden line is charged, the free one is not
    assert r.free == D("0.80")
    assert r.discount == D("0.333457")  # 0.3334567 half up to the micro-unit
    assert r.extras == D("1.50")
    # 3.334567 - 0.333457 + 1.50 = 4.501110, up to 0.05: 4.55
    assert (r.total, r.rounding) == (D("4.55"), D("0.048890"))
    assert r.change == D("15.45")


@pytest.mark.parametrize(
    ("step", "total"),
    [("0.01", "2.01"), ("0.05", "2.05"), ("0.10", "2.10"), ("1.00", "3.00")],
)
def test_rounding_steps_always_round_up(step, total):
    assert compute([Line(D("2.000001"))], step=D(step)).total == D(total)


def test_an_exact_total_is_not_rounded_and_nothing_is_change_without_payment():
    r = compute([Line(D("2.05"))], step=D("0.05"))
    assert (r.total, r.rounding, r.paid, r.change) == (D("2.05"), D("0.00"), D("2.05"), D(0))


def test_a_full_discount_and_only_free_lines_cost_nothing():
    assert compute([Line(D("3"))], discount_percent=D(100)).total == 0
    assert compute([Line(D("3"), free=True)]).total == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lines": [Line(D("-1"))]},
        {"lines": [Line(D("0.0000001"))]},
        {"lines": [Line(1.5)]},
        {"lines": [Line(D(1))], "discount_percent": D("100.1")},
        {"lines": [Line(D(1))], "step": D("0.02")},
        {"lines": [Line(D(1))], "extras": [Extra(" ", D(1))]},
        {"lines": [Line(D(5))], "paid": D("4.99")},
    ],
)
def test_impossible_input_is_refused_with_a_message(kwargs):
    with pytest.raises(InvalidInput):
        compute(kwargs.pop("lines"), **kwargs)
