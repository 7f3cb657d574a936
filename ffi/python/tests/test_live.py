"""The binding end to end against a real `confiance serve` on loopback: consent, record,
flush, upload, acknowledge, a withdrawal, and the server's own count of what it kept."""

import datetime
import json
import os
import subprocess
import sys

import confiance

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


def released(server):
    """How many thermostat.mode reports the server holds for calora (0 when it holds
    none, 404, or fewer than the catalogue's release minimum of 30, 422)."""
    status, answer = server.request(
        "POST", "/v1/releases", json.dumps({"metric": "thermostat.mode", "recipient": "calora"}).encode(),
        content_type="application/json", auth=True,
    )
    if (status, answer["error"]["code"] if status != 200 else None) in ((404, "nothing_to_release"),
                                                                        (422, "too_few_reports")):
        return 0
    assert status == 200, answer
    return answer["n"]


def fault_code_subjects(server):
    """How many subjects have a consent in force now that lets calora see fault codes
    (`subjects` also counts those whose records are still held)."""
    entries = server.get("/v1/metrics/thermostat.fault-code/who-sees", auth=True)["entries"]
    return sum(e["subjects_in_window"] for e in entries if e["recipient"] == "calora")


def test_a_device_end_to_end(server, make_recorder, start):
    mode_before = released(server)
    device = make_recorder()
    stats = device.give_consent(
        confiance.ConsentRequest(
            recipient="calora", purpose="product-improvement", metrics=["thermostat.mode"], hold="P90D"
        ),
        start,
    )
    service = device.give_consent(
        confiance.ConsentRequest(recipient="calora", purpose="service", metrics=["thermostat.fault-code"], hold="P1Y"),
        start,
    )
    assert [server.post("/v1/receipts", r)[0] for r in (stats, service)] == [201, 201]

    # Four days of a reading an hour; the catalogue's budget (ε = 8 a day, 1 a report)
    # stops the ninth reading of each day, which strict mode raises.
    exhausted, reports = 0, 0
    for day in range(4):
        for hour in range(24):
            t = start + day * DAY + hour * HOUR + HOUR / 2
            try:
                device.record("thermostat.mode", "product-improvement", confiance.Value.CATEGORY(index=2), t)
            except confiance.ConfianceError.BudgetExhausted:
                exhausted += 1
        if day == 1:
            device.record_service("thermostat.fault-code", confiance.Value.INT(value=42), start + day * DAY)
        frames = device.flush(start + day * DAY + DAY - datetime.timedelta(seconds=1))
        assert len(frames) >= 1
        for frame in frames:
            status, answer = server.post("/v1/envelopes", frame)
            assert status == 201, answer
            assert answer["refused"] == []
            reports += answer["reports"]
            device.acknowledge(frame)
        assert device.pending_envelopes() == 0
    assert exhausted == 4 * 16
    assert reports == 4 * 8 + 1
    counters = device.counters()
    assert (counters.recorded, counters.budget_exhausted, counters.storage_failed) == (33, 0, 0)
    assert device.errors() == [], "strict mode raises instead of counting"

    # The server kept all 32 statistics; the device is one more subject for fault codes.
    assert released(server) == mode_before + 32
    subjects = fault_code_subjects(server)
    assert subjects >= 1

    # The owner withdraws the service consent: the server no longer counts the device.
    withdrawal = device.withdraw_consent(confiance.receipt_id(service), start + 4 * DAY)
    status, answer = server.post("/v1/withdrawals", withdrawal)
    assert status == 201 and answer["withdrawn"] is True, answer
    assert fault_code_subjects(server) == subjects - 1
    # And the device records no more fault codes (strict: NoConsent).
    try:
        device.record_service("thermostat.fault-code", confiance.Value.INT(value=7), start + 4 * DAY + HOUR)
        raise AssertionError("recorded without consent")
    except confiance.ConfianceError.NoConsent as e:
        assert "thermostat.fault-code" in str(e)


def test_the_example_runs(server, tmp_path):
    example = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "thermostat.py")
    out = subprocess.run(
        [sys.executable, example, server.url, str(tmp_path / "state")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result == {
        "receipts": [201, 201], "envelopes": 2, "reports_accepted": 9, "recorded": 9,
        "budget_exhausted": 8, "pending": 0,
    }
