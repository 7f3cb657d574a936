"""Each kind of bad input raises its own typed exception (a subclass of
`confiance.ConfianceError`) and changes nothing."""

import datetime

import pytest

import confiance
from conftest import MemoryStorage

E = confiance.ConfianceError
MODE, IMPROVEMENT = "thermostat.mode", "product-improvement"


def consent(recipient="calora", purpose=IMPROVEMENT, metrics=(MODE,), hold="P90D", **validity):
    return confiance.ConsentRequest(recipient=recipient, purpose=purpose, metrics=list(metrics), hold=hold, **validity)


@pytest.fixture
def device(make_recorder, start):
    """A strict device that consented to thermostat.mode statistics at `start`."""
    r = make_recorder()
    r.give_consent(consent(), start)
    return r


def test_every_error_is_a_confiance_error():
    for name in ("BadArgument", "BadCatalogue", "BadKeyConfig", "ConsentRefused", "HoldTooLong", "UnknownReceipt",
                 "UnknownMetric", "WrongTrack", "WrongValue", "LabelOutOfRange", "ValueOutOfRange",
                 "PurposeNotAllowed", "NoConsent", "BudgetExhausted", "BudgetUnsaved", "NotRecorded",
                 "BadTokenScope", "BadTokenKey", "BadTokenResponse", "BadDelegation", "StorageFailed"):
        assert issubclass(getattr(E, name), E) and issubclass(E, Exception)
    # An envelope acknowledged twice is no failure: `acknowledge` says so, raising nothing.
    assert not hasattr(E, "UnknownEnvelope")


def test_bad_catalogue_bytes(catalogue, key_config):
    s = lambda: MemoryStorage()  # noqa: E731
    secrets = (confiance.random_secret(), confiance.random_secret())
    for bad in (b"", b"not a catalogue", catalogue[:-1], catalogue + b"\0"):
        with pytest.raises(E.BadCatalogue):
            confiance.Recorder(bad, *secrets, "calora", key_config, confiance.LimitsPreset.PHONE, s())


def test_bad_key_config(catalogue, key_config, make_recorder):
    secrets = (confiance.random_secret(), confiance.random_secret())
    for bad in (b"", key_config[:-1], b"\xff" * len(key_config)):
        with pytest.raises(E.BadKeyConfig):
            confiance.Recorder(catalogue, *secrets, "calora", bad, confiance.LimitsPreset.PHONE, MemoryStorage())
        with pytest.raises(E.BadKeyConfig):
            make_recorder().set_key_config(bad)
    # No key config yet is allowed: the reports wait in the queue.
    r = confiance.Recorder(catalogue, *secrets, "calora", None, confiance.LimitsPreset.MICROCONTROLLER, MemoryStorage())
    assert r.pending_envelopes() == 0


def test_bad_secrets_and_ids(catalogue, key_config):
    good = confiance.random_secret()
    assert len(good) == 32 and good != confiance.random_secret()
    for device_key, controller in ((good[:31], "calora"), (good + b"\0", "calora"), (good, "Not An Id!")):
        with pytest.raises(E.BadArgument):
            confiance.Recorder(catalogue, device_key, good, controller, key_config, confiance.LimitsPreset.PHONE,
                               MemoryStorage())


def test_consent_refused_and_hold_too_long(make_recorder, start):
    r = make_recorder()
    # thermostat.mode is held at most P1Y (its catalogue cap): five years is refused.
    with pytest.raises(E.HoldTooLong) as e:
        r.give_consent(consent(hold="P5Y"), start)
    assert MODE in str(e.value)
    with pytest.raises(E.ConsentRefused):
        r.give_consent(consent(recipient="nobody"), start)
    with pytest.raises(E.ConsentRefused):
        r.give_consent(consent(metrics=["no.such-metric"]), start)
    with pytest.raises(E.ConsentRefused):  # ends before it starts
        r.give_consent(consent(valid_from=start + datetime.timedelta(days=2), valid_until=start), start)
    with pytest.raises(E.BadArgument):
        r.give_consent(consent(hold="ninety days"), start)
    with pytest.raises(E.BadArgument):
        r.give_consent(consent(), datetime.datetime(1960, 1, 1, tzinfo=datetime.timezone.utc))
    # None of them gave consent.
    with pytest.raises(E.NoConsent):
        r.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)


def test_strict_record_errors_change_nothing(device, start):
    before = device.counters()
    cases = [
        (E.UnknownMetric, lambda: device.record("thermostat.mood", IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)),
        (E.WrongTrack, lambda: device.record("thermostat.fault-code", "service", confiance.Value.INT(value=1), start)),
        (E.WrongTrack, lambda: device.record_service(MODE, confiance.Value.CATEGORY(index=1), start)),
        (E.WrongValue, lambda: device.record(MODE, IMPROVEMENT, confiance.Value.BOOL(value=True), start)),
        (E.LabelOutOfRange, lambda: device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=42), start)),
        (E.ValueOutOfRange, lambda: device.record("thermostat.setpoint", IMPROVEMENT, confiance.Value.INT(value=9999), start)),
        (E.PurposeNotAllowed, lambda: device.record(MODE, "research", confiance.Value.CATEGORY(index=1), start)),
        (E.NoConsent, lambda: device.record(MODE, "grid-balancing", confiance.Value.CATEGORY(index=1), start)),
        (E.BadArgument, lambda: device.record("Not An Id!", IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)),
    ]
    for error, call in cases:
        with pytest.raises(error):
            call()
    assert device.counters() == before
    assert device.flush(start) == []


def test_lenient_mode_counts_per_metric_and_cause(device, start):
    device.set_strict(False)
    device.record("thermostat.mood", IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    device.record("thermostat.mood", IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=42), start)
    device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    errors = {(e.metric, e.cause): e.count for e in device.errors()}
    assert errors == {("thermostat.mood", "UnknownMetric"): 2, (MODE, "LabelOutOfRange"): 1}
    c = device.counters()
    assert (c.recorded, c.unknown_metric, c.invalid_value) == (1, 2, 1)


def test_budget_exhausted(device, start):
    for k in range(8):
        device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start + datetime.timedelta(minutes=k))
    with pytest.raises(E.BudgetExhausted):
        device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start + datetime.timedelta(hours=1))
    assert device.counters().recorded == 8


def test_unknown_receipt_and_envelope(device, start):
    with pytest.raises(E.UnknownReceipt):
        device.withdraw_consent(bytes(32), start)
    with pytest.raises(E.BadArgument):
        device.withdraw_consent(bytes(31), start)
    with pytest.raises(E.BadArgument):
        confiance.receipt_id(b"not a receipt")
    receipt = device.give_consent(consent(purpose="grid-balancing"), start)
    device.withdraw_consent(confiance.receipt_id(receipt), start + datetime.timedelta(hours=1))
    with pytest.raises(E.UnknownReceipt):  # already withdrawn
        device.withdraw_consent(confiance.receipt_id(receipt), start + datetime.timedelta(hours=2))

    device.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    [frame] = device.flush(start + datetime.timedelta(hours=3))
    # An envelope the outbox does not hold is a notice, not an error: False, nothing changed.
    assert device.acknowledge(frame[:-1]) is False
    assert device.pending_envelopes() == 1
    assert device.acknowledge(frame) is True
    assert device.acknowledge(frame) is False  # twice, after a retried upload
    assert device.pending_envelopes() == 0


def test_storage_keeps_the_outbox_across_restarts(make_recorder, start):
    storage = MemoryStorage()
    secrets = (confiance.random_secret(), confiance.random_secret())
    first = make_recorder(storage=storage, secrets=secrets)
    first.give_consent(consent(), start)
    first.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    [frame] = first.flush(start + datetime.timedelta(hours=1))
    assert storage.saves > 0
    again = make_recorder(storage=storage, secrets=secrets)
    assert again.pending_envelopes() == 1
    again.acknowledge(frame)
    assert again.pending_envelopes() == 0


class BrokenStorage(confiance.HostStorage):
    def __init__(self, error):
        self.error = error

    def load(self):
        raise self.error

    def save(self, data):
        raise self.error


@pytest.mark.parametrize("error", [E.StorageFailed("disk full"), OSError("disk full")])
def test_a_failing_storage_is_counted_not_raised(make_recorder, start, error):
    r = make_recorder(storage=BrokenStorage(error), strict=False)
    r.give_consent(consent(metrics=[MODE, "thermostat.setpoint"]), start)
    # A metric without a budget is recorded; one with a budget fails closed (its charge
    # could not be kept), counted.
    r.record("thermostat.setpoint", IMPROVEMENT, confiance.Value.INT(value=200), start)
    r.record(MODE, IMPROVEMENT, confiance.Value.CATEGORY(index=1), start)
    c = r.counters()
    assert c.recorded == 1 and c.budget_unsaved == 1 and c.storage_failed >= 2
