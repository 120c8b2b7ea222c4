"""The `foyer` command as a household member uses it: brands, status, chat."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import BrandRunner, HubRunner
from tests.factories import python_cmd, wait_for

pytestmark = pytest.mark.e2e


def foyer(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(python_cmd(*args), input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_opt_in_and_out_from_the_command_line(hub_runner: HubRunner) -> None:
    client = hub_runner.start()
    url = client.base_url
    listing = foyer("brands", "--url", url)
    assert listing.returncode == 0, listing.stderr
    assert "· sportissimo" in listing.stdout
    assert "instant" not in listing.stdout  # test brands stay out of the household's directory
    opted = foyer("brands", "opt-in", "sportissimo", "--url", url)
    assert "✔ sportissimo" in opted.stdout
    assert client.brand("sportissimo")["opted_in"] is True
    refused = foyer("brands", "opt-in", "ghost", "--url", url)
    assert refused.returncode == 1
    assert "'ghost'" in refused.stderr
    out = foyer("brands", "opt-out", "sportissimo", "--url", url)
    assert "· sportissimo" in out.stdout
    status = foyer("status", "--url", url)
    assert "broker_connected   True" in status.stdout
    down = foyer("status", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert "cannot reach the hub" in down.stderr


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_chat_asks_which_brand_then_shows_the_answer(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["sportissimo", "energie_claire"]
    client = hub_runner.start()
    brands("sportissimo").start()
    wait_for(lambda: client.brand("sportissimo")["online"], 20, "sportissimo online")
    proc = subprocess.Popen(python_cmd("chat", "--url", client.base_url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdin is not None
    proc.stdin.write("Où en est ma commande 4821 ?\n")
    proc.stdin.flush()
    wait_for(lambda: client.health()["refused"].get("http_ambiguous_brand"), 15, "the question")
    proc.stdin.write("Sportissimo\n")
    proc.stdin.flush()
    wait_for(lambda: len(client.http.get("/api/conversations").json()) == 1, 15, "the conversation")
    conversation = client.http.get("/api/conversations").json()[0]["id"]
    client.wait_reply(conversation)
    proc.stdin.write("/quitter\n")
    proc.stdin.flush()
    output, _ = proc.communicate(timeout=15)
    assert "À quelle marque voulez-vous écrire ?" in output
    assert "Assistant Sportissimo" in output
    assert "4821" in output
    assert proc.returncode == 0
