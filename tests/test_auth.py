"""Only paired devices use the API; roles limit what they may do; revocation is immediate."""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import HubRunner, pair_device
from tests.factories import HubClient

pytestmark = pytest.mark.e2e

PUBLIC = {("POST", "/api/pair"), ("GET", "/api/health")}


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_every_route_but_pairing_and_health_needs_a_device_token(hub_runner: HubRunner) -> None:
    admin = hub_runner.start()
    spec = admin.http.get("/openapi.json").json()
    anonymous = HubClient(admin.base_url)
    checked = 0
    for path, methods in spec["paths"].items():
        for method in methods:
            if (method.upper(), path) in PUBLIC:
                continue
            concrete = path.replace("{brand_id}", "instant").replace("{conversation_id}", "x")
            concrete = concrete.replace("{device_id}", "x")
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                response = anonymous.http.request(method, concrete, headers=headers, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"] == "unauthorized"
            checked += 1
    assert checked >= 12
    with pytest.raises(InvalidStatus), anonymous.events():
        pass
    assert admin.health()["refused"]["ws_unauthorized"] == 1
    anonymous.close()


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_members_talk_admins_choose_and_revocation_is_immediate(hub_runner: HubRunner) -> None:
    admin = hub_runner.start()
    member = HubClient(admin.base_url, token=pair_device(hub_runner.data_dir, admin, "member", "phone"))
    assert member.http.get("/api/me").json()["role"] == "member"
    refused = member.http.post("/api/brands/sportissimo/opt-in")
    assert refused.status_code == 403
    assert "needs an admin device" in refused.json()["message"]
    assert admin.http.post("/api/brands/sportissimo/opt-in").status_code == 200
    assert member.send("ma commande sportissimo ?").status_code == 202
    code = admin.http.post("/api/pairing-codes", json={"role": "member"}).json()["code"]
    assert member.http.post("/api/pairing-codes", json={}).status_code == 403
    tablet = HubClient(admin.base_url)
    paired = tablet.http.post("/api/pair", json={"code": code, "name": "tablette"})
    assert paired.status_code == 200
    assert "httponly" in paired.headers["set-cookie"].lower()
    assert "samesite=strict" in paired.headers["set-cookie"].lower()
    assert tablet.http.get("/api/me").json()["name"] == "tablette"  # the cookie alone is enough
    reused = tablet.http.post("/api/pair", json={"code": code, "name": "intrus"})
    assert reused.status_code == 403
    assert "already used" in reused.json()["message"]
    phone_id = member.http.get("/api/me").json()["id"]
    assert admin.http.delete(f"/api/devices/{phone_id}").status_code == 200
    gone = member.http.get("/api/conversations")
    assert gone.status_code == 401
    assert "revoked" in gone.json()["message"]
    with pytest.raises(InvalidStatus), member.events():
        pass
    for client in (member, tablet):
        client.close()


@pytest.mark.parametrize("broker", ["embedded"], indirect=True)
def test_guessing_pairing_codes_is_stopped(hub_runner: HubRunner) -> None:
    admin = hub_runner.start()
    guesser = HubClient(admin.base_url)
    answers = [guesser.http.post("/api/pair", json={"code": f"AAAA-AAA{i}", "name": "x"}) for i in range(12)]
    assert [a.status_code for a in answers] == [403] * 12
    assert "not valid" in answers[0].json()["message"]
    assert "paused" in answers[-1].json()["message"]
    code = admin.http.post("/api/pairing-codes", json={}).json()["code"]
    assert "paused" in guesser.http.post("/api/pair", json={"code": code, "name": "x"}).json()["message"]
    guesser.close()
