"""The catalogue's cards are links: what authors write inside them (titles, summaries,
prerequisites with their own Markdown links) must not put a link inside that link, or
the browser ends the card there and the rest spills out of it."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import ROOT

pytestmark = [pytest.mark.django_db]


class _Cards(HTMLParser):
    """Counts links opened inside an open link, and the text of each card's link."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.nested = 0
        self.cards: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            if self.depth:
                self.nested += 1
            self.depth += 1
            if ("class", "lab-card-link") in attrs:
                self.cards.append("")

    def handle_endtag(self, tag):
        if tag == "a" and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth and self.cards:
            self.cards[-1] += data


@pytest.mark.parametrize("lang", ["zh-hans", "en"])
def test_no_link_inside_a_card_and_each_summary_stays_in_its_card(django_user_model, lang):
    from labs.models import Lab

    call_command("labs", "import", str(ROOT / "labs" / "builtin"))
    assert any("](" in str(lab.summary) for lab in Lab.objects.all()), "a summary with a Markdown link is the case"
    client = Client(HTTP_ACCEPT_LANGUAGE=lang)
    client.force_login(django_user_model.objects.create_user("reader", password="pw-for-tests-123"))
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=lang)
    assert page.status_code == 200
    parser = _Cards()
    parser.feed(page.content.decode())
    assert parser.nested == 0
    assert len(parser.cards) == Lab.objects.filter(published=True).count()
    # The link's own text holds the summary's words (here, of the overlayfs lab's summary).
    overlay = next(text for text in parser.cards if "overlay" in text.lower())
    assert len(overlay) > 60
