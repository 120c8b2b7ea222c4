"""The `foyer` command as a household member uses it: brands, status, chat."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BrandRunner, HubRunner
from tests.factories import python_cmd, wait_for

pytestmark = pytest.mark.e2e


def foyer(*args: str, token: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FOYER_TOKEN": token}
    return subprocess.run(python_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_opt_in_and_out_from_the_command_line(hub_runner: HubRunner) -> None:
    client = hub_runner.start()
    url = client.base_url
    unpaired = foyer("brands", "--url", url)
    assert unpaired.returncode == 1
    assert "foyer pair" in unpaired.stderr
    token = hub_runner.token
    listing = foyer("brands", "--url", url, token=token)
    assert listing.returncode == 0, listing.stderr
    nothing = foyer("brands", "approve-keys", "sportissimo", "--url", url, token=token)
    assert nothing.returncode == 1
    assert "no key change waiting" in nothing.stderr
    assert "· sportissimo" in listing.stdout
    assert "instant" not in listing.stdout  # test brands stay out of the household's directory
    opted = foyer("brands", "opt-in", "sportissimo", "--url", url, token=token)
    assert "✔ sportissimo" in opted.stdout
    assert client.brand("sportissimo")["opted_in"] is True
    refused = foyer("brands", "opt-in", "ghost", "--url", url, token=token)
    assert refused.returncode == 1
    assert "'ghost'" in refused.stderr
    out = foyer("brands", "opt-out", "sportissimo", "--url", url, token=token)
    assert "· sportissimo" in out.stdout
    status = foyer("status", "--url", url)
    assert "broker_connected   True" in status.stdout
    down = foyer("status", "--url", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert "cannot reach the hub" in down.stderr


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_a_terminal_pairs_with_a_code_and_is_remembered(hub_runner: HubRunner, tmp_path: Path) -> None:
    client = hub_runner.start()
    code = foyer("pair", "--data-dir", str(hub_runner.data_dir))
    assert "Code d'appairage (membre), valable 10 minutes" in code.stdout
    shown = code.stdout.split(": ")[-1].strip()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "FOYER_TOKEN": ""}
    login = subprocess.run(python_cmd("login", shown.lower(), "--url", client.base_url, "--name", "portable"),
                           capture_output=True, text=True, env=env, check=False, timeout=30)
    assert login.returncode == 0, login.stderr
    tokens = tmp_path / "config" / "foyer" / "tokens.json"
    assert tokens.stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(python_cmd("brands", "--url", client.base_url), capture_output=True,
                             text=True, env=env, check=False, timeout=30)
    assert "sportissimo" in listing.stdout
    again = subprocess.run(python_cmd("login", shown, "--url", client.base_url), capture_output=True,
                           text=True, env=env, check=False, timeout=30)
    assert again.returncode == 1
    assert "already used" in again.stderr
    devices = foyer("devices", "--url", client.base_url, token=hub_runner.token)
    assert "member  actif     portable" in devices.stdout


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_chat_asks_which_brand_then_shows_the_answer(
    hub_runner: HubRunner, brands: Callable[[str], BrandRunner]
) -> None:
    hub_runner.opt_in = ["sportissimo", "energie_claire"]
    client = hub_runner.start()
    brands("sportissimo").start()
    client.wait_online("sportissimo")
    proc = subprocess.Popen(python_cmd("chat", "--url", client.base_url), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "FOYER_TOKEN": hub_runner.token})
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
