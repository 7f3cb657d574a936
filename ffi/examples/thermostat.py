#!/usr/bin/env python3
"""A thermostat on the confiance recorder from Python (the UniFFI binding, module
`confiance`): what examples/thermostat.rs does, against a real `confiance serve`.

    python3 ffi/examples/thermostat.py SERVER_URL [STATE_FILE]

The catalogue's canonical bytes and the aggregator's key config come from the server
(GET /v1/catalogue, GET /v1/keys). The owner agrees to statistics for product improvement
and to the boiler's fault codes for service; the thermostat records its heating mode
every hour for a day and a fault code, flushes at the end of the day, uploads receipts
and envelopes with urllib, and acknowledges each envelope the server accepted (201).
Prints one JSON line; exits 0 only if every check passed.
"""

import datetime
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request

import confiance


class FileStorage(confiance.HostStorage):
    """The recorder's state in one file, replaced whole at each save."""

    def __init__(self, path):
        self.path = path

    def load(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None  # nothing saved yet

    def save(self, data):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def post(url, data):
    """POSTs raw bytes; returns (HTTP status, JSON answer)."""
    req = urllib.request.Request(
        url, data=bytes(data), method="POST", headers={"content-type": "application/octet-stream"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def main(server, state):
    catalogue = bytes.fromhex(get_json(server + "/v1/catalogue")["canonical"])
    key_config = bytes.fromhex(get_json(server + "/v1/keys")["keys"][0]["config"])

    # --- device ----------------------------------------------------------------------
    # First boot: the device key and pseudonym secret; a real device keeps them in its
    # keystore and gives them again at every start.
    device_key, pseudonym_secret = confiance.random_secret(), confiance.random_secret()
    thermostat = confiance.Recorder(
        catalogue, device_key, pseudonym_secret, "calora", key_config,
        confiance.LimitsPreset.PHONE, FileStorage(state),
    )

    # Yesterday at 08:00 UTC: the owner agrees (in the app). Instants are datetimes.
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    now = today - datetime.timedelta(days=1) + datetime.timedelta(hours=8)
    receipt = thermostat.give_consent(
        confiance.ConsentRequest(
            recipient="calora", purpose="product-improvement", metrics=["thermostat.mode"], hold="P90D"
        ),
        now,
    )
    service_receipt = thermostat.give_consent(
        confiance.ConsentRequest(recipient="calora", purpose="service", metrics=["thermostat.fault-code"], hold="P1Y"),
        now,
    )

    # Recording never raises (strict mode off): what cannot be recorded is counted (here
    # the catalogue's budget of ε = 8 a day, at ε = 1 a report, stops 8 of the 16).
    for hour in range(16):
        mode = confiance.Value.CATEGORY(index=1 if hour < 7 else 2)
        thermostat.record("thermostat.mode", "product-improvement", mode, now + datetime.timedelta(hours=hour))
    thermostat.record_service("thermostat.fault-code", confiance.Value.INT(value=42), now)
    frames = thermostat.flush(now + datetime.timedelta(hours=16))  # sealed envelopes
    # --- end of device code ------------------------------------------------------------

    # The host sends: consent first, then the envelopes; each one the server accepted
    # leaves the outbox.
    receipts = [post(server + "/v1/receipts", r)[0] for r in (receipt, service_receipt)]
    accepted = 0
    for frame in frames:
        status, answer = post(server + "/v1/envelopes", frame)
        if status == 201:
            thermostat.acknowledge(frame)
            accepted += answer["reports"]
    counters = thermostat.counters()
    result = {
        "receipts": receipts,
        "envelopes": len(frames),
        "reports_accepted": accepted,
        "recorded": counters.recorded,
        "budget_exhausted": counters.budget_exhausted,
        "pending": thermostat.pending_envelopes(),
    }
    print(json.dumps(result))
    return receipts == [201, 201] and accepted == 9 and result["pending"] == 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    state = sys.argv[2] if len(sys.argv) > 2 else os.path.join(tempfile.mkdtemp(), "thermostat.state")
    sys.exit(0 if main(sys.argv[1].rstrip("/"), state) else 1)
