"""The household web app in a real browser (Debian's Chromium driven by Playwright), against a
real hub, broker and demo brand. Screenshots of the main screens land in tests/screenshots/."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BrandRunner, HubRunner
from tests.factories import python_cmd

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).parent / "screenshots"


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing: scripts/test installs Debian's chromium package")
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def shoot(page: object, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_a_member_pairs_chooses_a_brand_talks_asks_for_a_person_and_rates(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner], browser: object, tmp_path: Path
) -> None:
    client = hub_runner.start()
    brands("sportissimo").start()
    origin = client.base_url
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="fr-FR")  # type: ignore[attr-defined]
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(origin)

    # Pairing with the code the hub shows.
    page.get_by_role("heading", name="Appairer cet appareil").wait_for()
    shoot(page, "desktop-pairing")
    shown = python_cmd("pair", "--role", "admin", "--quiet", "--data-dir", str(hub_runner.data_dir))
    code = subprocess.run(shown, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    page.get_by_label("Code d'appairage").fill(code)
    page.get_by_label("Nom de cet appareil").fill("navigateur de test")
    page.get_by_role("button", name="Appairer").click()
    page.get_by_role("button", name="Marques").wait_for()

    # Choose the retailer: what it asks for is shown, scope by scope, with its purpose.
    page.get_by_role("button", name="Marques").click()
    card = page.locator("article[data-brand=sportissimo]")
    card.get_by_text("customer_number").wait_for()
    card.locator("#scope-sportissimo-email").check()  # grant the e-mail…
    card.locator("#scope-sportissimo-postal_address").uncheck()  # …refuse the postal address
    card.get_by_role("button", name="Choisir cette marque").click()
    card.get_by_text("✔ choisie").wait_for()
    marketing = card.locator("#cat-sportissimo-marketing")
    marketing.wait_for()
    assert not marketing.is_checked()  # quiet by default: no advertising unless the household says so
    client.wait_online("sportissimo")
    shoot(page, "desktop-brands")

    # Talk: the order's real status comes back, marked as the brand's assistant.
    page.get_by_role("button", name="Conversations").click()
    page.get_by_label("Votre message").fill(
        "Où en est ma commande Sportissimo 4821 ? Mon e-mail : lea.martin@example.fr,"
        " j'habite 12 rue de la Paix, 75002 Paris"
    )
    page.get_by_role("button", name="Envoyer").click()
    answer = page.locator("li.msg.bot").filter(has_text="4821")
    answer.wait_for(timeout=20_000)
    assert "Assistant Sportissimo · assistant" in answer.inner_text()
    assert "postal_address" in page.locator("li.msg.out .masked").first.inner_text()  # shown what was masked

    # A person, one click away: the hub tells the truth about who is there.
    page.get_by_role("button", name="Parler à un humain").click()
    page.locator("li.msg.hub").filter(has_text="Sportissimo").first.wait_for(timeout=20_000)
    note = page.locator("li.msg.hub").last.inner_text()
    assert "conseiller" in note or "file d'attente" in note
    shoot(page, "desktop-talk")

    # The end of the conversation asks for a rating, which stays at home.
    page.get_by_role("button", name="Clore la conversation").click()
    page.locator("li.msg.hub[data-kind=rating_prompt]").wait_for()
    page.locator("button[data-part=bot][data-value='4']").click()
    page.get_by_label("Commentaire (facultatif)").fill("efficace")
    page.get_by_role("button", name="Envoyer mon avis").click()
    page.get_by_text("Votre avis : 4 ★").wait_for()
    conversation = client.http.get("/api/conversations").json()[0]["id"]
    assert client.conversation(conversation)["rating"]["rating_bot"] == 4

    # What the brand knows: the ledger shows the e-mail that was disclosed, and not the address.
    page.get_by_role("button", name="Marques").click()
    retailer = page.locator("article[data-brand=sportissimo]")
    retailer.get_by_role("button", name="Ce qu'elle sait de nous").click()
    ledger = page.locator("#ledger")
    ledger.wait_for()
    assert "lea.martin@example.fr" in ledger.inner_text()
    assert "Paix" not in ledger.inner_text()
    page.get_by_text("✔ Registre intact").wait_for()
    shoot(page, "desktop-ledger")
    with page.expect_download() as download:
        page.locator("#export").click()
    exported = Path(download.value.path()).read_text()
    assert "lea.martin@example.fr" in exported
    assert json.loads(exported)["format"] == "foyer-export/1"

    # Quiet hours, from the inbox.
    page.get_by_role("button", name="Boîte de réception").click()
    page.locator("#quiet-from").fill("21:30")
    page.get_by_role("button", name="Enregistrer").click()
    page.get_by_text("✔ enregistré").wait_for()
    assert client.http.get("/api/quiet-hours").json()["hours"] == "21:30-07:30"

    # How brands treat us, as a chart.
    page.get_by_role("button", name="Service").click()
    page.locator("figure.chart svg").first.wait_for()
    shoot(page, "desktop-service")

    # English too.
    page.get_by_role("button", name="English / Français").click()
    page.get_by_role("button", name="Brands").wait_for()

    # A phone-sized screen.
    phone = context.new_page()
    phone.on("request", lambda request: requests.append(request.url))
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(origin)
    phone.get_by_role("button", name="Conversations").wait_for()
    phone.get_by_role("button", name="Conversations").click()
    phone.locator("ul.convlist button").nth(1).click()
    phone.locator("li.msg.bot").first.wait_for()
    shoot(phone, "phone-talk")

    ws_origin = origin.replace("http", "ws", 1)
    foreign = [u for u in requests if not (u.startswith(origin) or u.startswith(ws_origin))]
    assert foreign == [], "the web app loaded something from outside the hub"
    assert any("/static/app.js" in u for u in requests)
    context.close()


def test_the_page_is_served_with_a_strict_content_security_policy(hub_runner: HubRunner) -> None:
    client = hub_runner.start()
    page = client.http.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/app.js"' in page.text
    assert client.http.get("/static/app.js").status_code == 200
