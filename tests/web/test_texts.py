"""Every text the pages name exists in both languages, and every text is named somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from liandong.services.catalogue import StockState
from liandong.services.stats import AbnormalReason, AlertKind
from liandong.store.models import OrderStatus
from liandong.web.texts import TEXTS

WEB = Path(__file__).resolve().parents[2] / "backend" / "liandong" / "web"
NOT_TEXTS = {"eth_call", "personal_sign", "product_id"}
"""snake_case strings in the scripts that are method or field names, not texts."""
FAMILIES = {
    "state_": [status.value for status in OrderStatus],
    "status_": [status.value for status in OrderStatus] + ["reorged"],
    "reason_": [reason.value for reason in AbnormalReason],
    "alert_": [kind.value for kind in AlertKind],
    "stock_": [state.value for state in StockState],
    "stage_": ["reading", "encrypting", "storing", "done"],
}
"""Texts the scripts and templates name by a prefix and a value (`state_${order.status}`)."""


def named_texts() -> set[str]:
    templates = "".join(path.read_text() for path in (WEB / "templates").glob("*.html"))
    scripts = "".join(path.read_text() for path in (WEB / "static" / "js").glob("*.js"))
    named = set(re.findall(r'data-i18n(?:-label)?="([a-z0-9_]+)"', templates))
    named |= set(re.findall(r"\bt\.([a-z0-9_]+)", templates))
    named |= set(re.findall(r'"([a-z0-9]+(?:_[a-z0-9]+)+)"', scripts)) - NOT_TEXTS
    named |= set(re.findall(r'\b(?:t|action|Problem|translated|report)\("([a-z0-9_]+)"', scripts))
    named |= set(re.findall(r'\b(?:setText|verdict)\([^,]+,\s*"([a-z0-9_]+)"', scripts))
    named |= {"switch_language", "shop_title", "order_title", "dashboard_title"}  # the page titles
    return named | {prefix + value for prefix, values in FAMILIES.items() for value in values}


def test_both_languages_have_every_text() -> None:
    assert set(TEXTS) == {"en", "zh"}
    assert TEXTS["en"].keys() == TEXTS["zh"].keys()
    for texts in TEXTS.values():
        assert all(text.strip() for text in texts.values())


def test_every_text_named_by_the_pages_exists_and_none_is_left_unused() -> None:
    named = named_texts()
    assert sorted(named - TEXTS["en"].keys()) == []
    assert sorted(TEXTS["en"].keys() - named) == []


def test_placeholders_are_the_same_in_both_languages() -> None:
    for key, english in TEXTS["en"].items():
        assert set(re.findall(r"\{\w+\}", english)) == set(re.findall(r"\{\w+\}", TEXTS["zh"][key])), key
