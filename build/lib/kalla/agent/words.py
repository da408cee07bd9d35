"""A design in plain words: the recipe's ``match_description`` and each pass's description."""

from __future__ import annotations

from kalla.agent.columns import ColumnInfo
from kalla.agent.design import Design, KeyLink, Sign, TextRule, tolerance_words
from kalla.agent.normalize import BY_NAME

_SIGN = {
    Sign.SAME: "",
    Sign.NEGATED: " (the two sides record amounts with opposite signs)",
    Sign.ABSOLUTE: " (signs ignored: amounts compared as absolute values)",
}
_TEXT = {
    TextRule.EQUAL: "are the same name once spaces, punctuation and case are ignored",
    TextRule.CONTAINS: "name the same party (one contains the other, ignoring spaces, "
    "punctuation and case)",
    TextRule.FIRST_WORD: "name the same party (the first word of '{l}' appears in '{r}')",
    TextRule.FIRST_WORD_RIGHT: "name the same party (the first word of '{r}' appears in '{l}')",
}


def _amount(info: ColumnInfo) -> str:
    if info.parts is None:
        return f"'{info.name}'"
    return f"'{info.parts[0]}' minus '{info.parts[1]}'"


def _key_words(link: KeyLink) -> str:
    if link.normalisation == "same_day":
        how = "fall on the same day"
    else:
        how = f"are {BY_NAME[link.normalisation].words}"
    return f"'{link.left.name}' and '{link.right.name}' {how}"


def _days(low: int, high: int, right: str, left: str) -> str:
    if low == high == 0:
        return f"'{right}' is the same day as '{left}'"
    if low >= 0:
        return f"'{right}' is {low} to {high} days after '{left}'"
    if high <= 0:
        return f"'{right}' is {-high} to {-low} days before '{left}'"
    return f"'{right}' is between {-low} days before and {high} days after '{left}'"


def describe(design: Design) -> str:
    """One paragraph a finance user can check against what they know of their data."""
    la, ra = design.left_alias, design.right_alias
    sentences = []
    amount = design.amount
    if design.keys:
        keys = " and ".join(_key_words(k) for k in design.keys)
        if design.window is not None:
            w = design.window
            keys += ", " + _days(w.low, w.high, w.right.name, w.left.name)
        sentence = f"A {la} record matches a {ra} record when {keys}"
        if amount is None:
            sentence += "."
        else:
            what = f"{_amount(amount.left)} equals {_amount(amount.right)}{_SIGN[amount.sign]}"
            if amount.tolerance is None:
                sentence += f", and {what}."
            elif amount.exact_share > 0:
                sentence += (
                    f", and {what}: first exactly, then, for the records still open, "
                    f"within {tolerance_words(amount)}."
                )
            else:
                sentence += f", and {what} within {tolerance_words(amount)}."
        sentences.append(sentence)
    else:
        assert amount is not None
        sentence = (
            f"There is no shared reference: a {la} record matches a {ra} record when "
            f"{_amount(amount.left)} equals {_amount(amount.right)}{_SIGN[amount.sign]}"
        )
        if design.window is not None:
            w = design.window
            sentence += ", " + _days(w.low, w.high, w.right.name, w.left.name)
        if design.counterparty is not None:
            t = design.counterparty
            rule = _TEXT[t.rule].format(l=t.left.name, r=t.right.name)
            sentence += f", and '{t.left.name}' and '{t.right.name}' {rule}"
        sentences.append(sentence + ".")
    if design.one_to_one:
        closest = "the closest amount (then date) wins" if design.keys else "the closest date wins"
        sentences.append(
            f"Where a record has several candidates, {closest} and each record is used once."
        )
    return " ".join(sentences)
