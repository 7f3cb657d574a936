"""Report tokens through the binding, against a real `confiance serve --token-secret` on
loopback: a device enrols, its statistics wait for a token (counted), it fetches the
planned tokens (`GET /v1/token-keys`, `POST /v1/tokens`), spends one, and the server keeps
its envelope; a device its owner's app delegated does the same for the owner; a device
not enrolled is refused and asks again once it forgets the refused request; bad input
raises its exception and changes nothing. The owner's side: a lost device revoked from
the owner's app is refused from then; the subject id the device and the app read is the
one an auditor's subject access lists the device under."""

import datetime
import json

import pytest

import confiance
from conftest import recorders

SIX_HOURS = 6 * 3600
MODE = ("thermostat.mode", "product-improvement")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def consent(device, t):
    return device.give_consent(
        confiance.ConsentRequest(recipient="calora", purpose="product-improvement", metrics=["thermostat.mode"],
                                 hold="P90D"),
        t,
    )


def fetch(server, device, t):
    """Fetches every planned scope's tokens; returns [(plan entry, HTTP status, tokens added)]."""
    out = []
    for f in device.tokens_to_fetch(t, SIX_HOURS):
        key = server.get("/v1/token-keys?" + f.key_query)
        assert (key["recipients"], key["purpose"], key["period"]) == (f.recipients, f.purpose, f.period)
        # The key as served: its hex digits (its 32 bytes would do as well).
        request = device.token_request(f.scope, key["public_key"].encode(), f.count)
        status, body = server.post_raw("/v1/tokens", request)
        if status != 200:
            out.append((f, status, json.loads(body)))
            continue
        out.append((f, status, device.take_token_response(body)))
    return out


def test_a_device_gets_tokens_spends_one_and_the_server_keeps_its_envelope(token_server, make_token_recorder):
    t = now() - datetime.timedelta(seconds=5)
    device = make_token_recorder()
    assert token_server.post("/v1/delegations", device.enrollment(t, None, t))[0] == 201
    assert token_server.post("/v1/receipts", consent(device, t))[0] == 201
    device.require_tokens(True)

    # No token yet: the reading waits in the queue, counted.
    device.record(*MODE, confiance.Value.CATEGORY(index=2), t)
    assert device.flush(t) == []
    assert device.counters().waiting_for_token == 1

    fetched = fetch(token_server, device, t)
    today = [x for x in fetched if x[0].period == int(t.timestamp()) // 86400]
    assert len(today) == 1, fetched
    plan, status, added = today[0]
    assert (status, added) == (200, plan.count) and plan.count >= 1
    assert device.tokens_held(plan.scope) == plan.count
    assert device.tokens_to_fetch(t, SIX_HOURS) == [], "every planned scope asked for"

    # The waiting reading goes out with a token, and the server keeps it.
    frames = device.flush(now())
    assert len(frames) == 1
    assert device.tokens_held(plan.scope) == plan.count - 1
    status, answer = token_server.post("/v1/envelopes", frames[0])
    assert status == 201 and answer["reports"] == 1 and answer["refused"] == [], answer
    device.acknowledge(frames[0])
    counters = device.counters()
    assert (counters.envelopes_sealed, counters.token_failed, counters.waiting_for_token) == (1, 0, 1)


def test_a_device_delegated_by_its_owner_gets_tokens_for_the_owner(token_server, make_token_recorder):
    t = now() - datetime.timedelta(seconds=5)
    # The owner's phone app holds the subject key and delegates the thermostat's key.
    owner, device_key = confiance.random_secret(), confiance.random_secret()
    delegation = confiance.delegate_device(owner, confiance.device_public_key(device_key), t, None, t)
    with pytest.raises(confiance.ConfianceError.BadDelegation):
        make_token_recorder(secrets=(confiance.random_secret(), confiance.random_secret()), delegation=delegation)
    device = make_token_recorder(secrets=(device_key, confiance.random_secret()), delegation=delegation)
    assert device.enrollment(t, None, t) == delegation

    # Before the delegation is in, the device is not enrolled: its receipt is refused.
    receipt = consent(device, t)
    status, answer = token_server.post("/v1/receipts", receipt)
    assert status >= 400 and answer["error"]["code"] == "not_enrolled", answer
    assert token_server.post("/v1/delegations", delegation)[0] == 201
    assert token_server.post("/v1/receipts", receipt)[0] == 201

    device.require_tokens(True)
    device.record(*MODE, confiance.Value.CATEGORY(index=0), t)
    fetched = fetch(token_server, device, t)
    assert fetched and all(s == 200 and added == f.count for f, s, added in fetched), fetched
    (frame,) = device.flush(now())
    status, answer = token_server.post("/v1/envelopes", frame)
    assert status == 201 and answer["reports"] == 1 and answer["refused"] == [], answer


def test_without_tokens_the_server_refuses_the_envelope(token_server, make_token_recorder):
    t = now()
    device = make_token_recorder()
    assert token_server.post("/v1/receipts", consent(device, t))[0] == 201
    device.record(*MODE, confiance.Value.CATEGORY(index=1), t)  # tokens not required here
    (frame,) = device.flush(t)
    status, answer = token_server.post("/v1/envelopes", frame)
    assert status >= 400 and answer["error"]["code"] == "token_missing", answer


def test_a_device_not_enrolled_is_refused_and_asks_again(token_server, make_token_recorder):
    t = now()
    device = make_token_recorder()  # neither its receipt nor its enrolment posted
    consent(device, t)
    device.require_tokens(True)
    device.record(*MODE, confiance.Value.CATEGORY(index=1), t)
    fetched = fetch(token_server, device, t)
    assert fetched and all(s == 403 and a["error"]["code"] == "not_enrolled" and a["error"]["retry"]
                           for _, s, a in fetched), fetched
    assert device.tokens_to_fetch(t, SIX_HOURS) == [], "asked for, not answered"
    for plan, _, _ in fetched:
        device.forget_token_requests(plan.scope)
        assert device.tokens_held(plan.scope) == 0
    assert device.tokens_to_fetch(t, SIX_HOURS) == [x[0] for x in fetched]


def test_bad_token_input_raises_and_changes_nothing(token_server, make_token_recorder):
    t = now()
    device = make_token_recorder()
    assert token_server.post("/v1/receipts", consent(device, t))[0] == 201
    device.require_tokens(True)
    device.record(*MODE, confiance.Value.CATEGORY(index=1), t)
    plan = device.tokens_to_fetch(t, SIX_HOURS)
    assert plan
    f = plan[0]
    key = token_server.get("/v1/token-keys?" + f.key_query)["public_key"]
    for bad in (b"", f.scope[:-1], f.scope + b"\0", b"\xff" * 40):
        with pytest.raises(confiance.ConfianceError.BadTokenScope):
            device.token_request(bad, key.encode(), f.count)
        with pytest.raises(confiance.ConfianceError.BadTokenScope):
            device.tokens_held(bad)
        with pytest.raises(confiance.ConfianceError.BadTokenScope):
            device.forget_token_requests(bad)
    for bad in (b"", bytes.fromhex(key)[:31], b"\xff" * 32, b"zz" * 32):
        with pytest.raises(confiance.ConfianceError.BadTokenKey):
            device.token_request(f.scope, bad, f.count)
    for bad in (0, 1025):
        with pytest.raises(confiance.ConfianceError.BadArgument):
            device.token_request(f.scope, key.encode(), bad)
    with pytest.raises(confiance.ConfianceError.BadTokenResponse):
        device.take_token_response(b"not a response")
    with pytest.raises(confiance.ConfianceError.ConsentRefused):
        device.enrollment(t, t - datetime.timedelta(days=1), t)
    # Nothing was asked for or added: the plan is the same, no token held, none failed.
    assert device.tokens_to_fetch(t, SIX_HOURS) == plan
    assert device.tokens_held(f.scope) == 0
    assert device.counters().token_failed == 0

    # A tampered answer is refused and adds nothing; the real one is taken.
    request = device.token_request(f.scope, key.encode(), f.count)
    status, body = token_server.post_raw("/v1/tokens", request)
    assert status == 200, body
    tampered = bytearray(body)
    tampered[-1] ^= 1  # the proof's last byte
    with pytest.raises(confiance.ConfianceError.BadTokenResponse):
        device.take_token_response(bytes(tampered))
    assert device.tokens_held(f.scope) == 0
    assert device.take_token_response(body) == f.count
    assert device.tokens_held(f.scope) == f.count


def test_an_owner_revokes_a_lost_device_and_the_server_refuses_it_from_then(token_server, make_token_recorder):
    t = now() - datetime.timedelta(seconds=5)
    owner, device_key = confiance.random_secret(), confiance.random_secret()
    public = confiance.device_public_key(device_key)
    delegation = confiance.delegate_device(owner, public, t, None, t)
    device = make_token_recorder(secrets=(device_key, confiance.random_secret()), delegation=delegation)
    assert token_server.post("/v1/delegations", delegation)[0] == 201
    assert token_server.post("/v1/receipts", consent(device, t))[0] == 201
    device.require_tokens(True)
    device.record(*MODE, confiance.Value.CATEGORY(index=0), t)
    fetched = fetch(token_server, device, t)
    assert fetched and all(s == 200 for _, s, _ in fetched), fetched

    # The thermostat is lost: the owner's app revokes it from now on.
    lost = now()
    with pytest.raises(confiance.ConfianceError.BadArgument):
        confiance.revoke_device(owner[:31], public, lost, lost)
    with pytest.raises(confiance.ConfianceError.BadArgument):
        confiance.revoke_device(owner, public + b"\0", lost, lost)
    stranger = confiance.revoke_device(confiance.random_secret(), public, lost, lost)
    status, answer = token_server.post("/v1/revocations", stranger)
    assert status == 403 and answer["error"]["code"] == "not_enrolled", answer
    revocation = confiance.revoke_device(owner, public, lost, lost)
    assert revocation == confiance.revoke_device(owner, public, lost, lost), "the same bytes again"
    assert token_server.post("/v1/revocations", revocation) == (201, {"device": public.hex(), "revoked": True})

    # From then, its receipts and token requests are refused, for good.
    status, answer = token_server.post("/v1/receipts", consent(device, now()))
    assert status == 403 and answer["error"]["code"] == "delegation_revoked", answer
    plan = fetched[0][0]
    key = token_server.get("/v1/token-keys?" + plan.key_query)["public_key"]
    status, body = token_server.post_raw("/v1/tokens", device.token_request(plan.scope, key.encode(), 1))
    answer = json.loads(body)
    assert status == 403 and answer["error"]["code"] == "delegation_revoked", answer
    assert answer["error"]["retry"] is False


def test_the_subject_id_is_the_one_subject_access_lists_the_device_under(server):
    t = now() - datetime.timedelta(seconds=5)
    make = recorders(server)
    # A device its own subject.
    device_key = confiance.random_secret()
    device = make(secrets=(device_key, confiance.random_secret()))
    assert server.post("/v1/delegations", device.enrollment(t, None, t))[0] == 201
    subject = device.subject_id()
    assert subject == confiance.subject_id_of_key(device_key) and len(subject) == 64
    access = server.get(f"/v1/subjects/{subject}/access", auth=True)
    public = confiance.device_public_key(device_key).hex()
    assert access["subject"] == subject and [d["device"] for d in access["devices"]] == [public], access

    # A device its owner delegated: the owner's id, which the owner's app reads from its key.
    owner, device_key = confiance.random_secret(), confiance.random_secret()
    public = confiance.device_public_key(device_key)
    delegation = confiance.delegate_device(owner, public, t, None, t)
    device = make(secrets=(device_key, confiance.random_secret()), delegation=delegation)
    assert server.post("/v1/delegations", delegation)[0] == 201
    subject = confiance.subject_id_of_key(owner)
    assert device.subject_id() == subject
    [listed] = server.get(f"/v1/subjects/{subject}/access", auth=True)["devices"]
    assert (listed["device"], listed["revoked_at"]) == (public.hex(), None)
    # Revoked: subject access shows from when.
    lost = now()
    assert server.post("/v1/revocations", confiance.revoke_device(owner, public, lost, lost))[0] == 201
    [listed] = server.get(f"/v1/subjects/{subject}/access", auth=True)["devices"]
    assert listed["revoked_at"] == int(lost.timestamp()), listed
    with pytest.raises(confiance.ConfianceError.BadArgument):
        confiance.subject_id_of_key(owner[:16])
