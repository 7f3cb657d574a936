// Bad input: a typed exception, nothing changed (ffi/python/tests/test_errors.py).

import java.time.Duration
import java.time.Instant
import uniffi.confiance.ConfianceException
import uniffi.confiance.LimitsPreset
import uniffi.confiance.Recorder
import uniffi.confiance.Value
import uniffi.confiance.randomSecret
import uniffi.confiance.receiptId

/** A strict device that consented to thermostat.mode statistics at `start`. */
fun consenting(devices: Devices, start: Instant): Recorder {
    val r = devices.make()
    r.giveConsent(consent(), start)
    return r
}

fun badCatalogueBytes(devices: Devices) {
    val c = devices.catalogue
    for (bad in listOf(ByteArray(0), "not a catalogue".toByteArray(), c.copyOf(c.size - 1), c + 0.toByte())) {
        raises<ConfianceException.BadCatalogue>("a catalogue of ${bad.size} bytes") {
            Recorder(bad, randomSecret(), randomSecret(), "calora", devices.keyConfig, LimitsPreset.PHONE, MemoryStorage())
        }
    }
}

fun badKeyConfig(devices: Devices) {
    val k = devices.keyConfig
    for (bad in listOf(ByteArray(0), k.copyOf(k.size - 1), ByteArray(k.size) { 0xff.toByte() })) {
        raises<ConfianceException.BadKeyConfig>("a new recorder, key config of ${bad.size} bytes") {
            Recorder(devices.catalogue, randomSecret(), randomSecret(), "calora", bad, LimitsPreset.PHONE, MemoryStorage())
        }
        raises<ConfianceException.BadKeyConfig>("setKeyConfig, ${bad.size} bytes") { devices.make().setKeyConfig(bad) }
    }
    // No key config yet is allowed: the reports wait in the queue.
    val r = Recorder(devices.catalogue, randomSecret(), randomSecret(), "calora", null, LimitsPreset.MICROCONTROLLER, MemoryStorage())
    expectEq(r.pendingEnvelopes(), 0uL, "envelopes of a recorder without a key")
}

fun badSecretsAndIds(devices: Devices) {
    val good = randomSecret()
    expect(good.size == 32 && !good.contentEquals(randomSecret())) { "random_secret: ${good.hex()}" }
    for ((deviceKey, controller) in listOf(good.copyOf(31) to "calora", good + 0.toByte() to "calora", good to "Not An Id!")) {
        raises<ConfianceException.BadArgument>("device key of ${deviceKey.size} bytes, controller $controller") {
            Recorder(devices.catalogue, deviceKey, good, controller, devices.keyConfig, LimitsPreset.PHONE, MemoryStorage())
        }
    }
}

fun consentRefusedAndHoldTooLong(devices: Devices, start: Instant) {
    val r = devices.make()
    // thermostat.mode is held at most P1Y (its catalogue cap): five years is refused.
    val e = raises<ConfianceException.HoldTooLong>("hold P5Y") { r.giveConsent(consent(hold = "P5Y"), start) }
    expect(MODE in e.detail) { "the detail does not name the metric: ${e.detail}" }
    raises<ConfianceException.ConsentRefused>("an unknown recipient") { r.giveConsent(consent(recipient = "nobody"), start) }
    raises<ConfianceException.ConsentRefused>("an unknown metric") { r.giveConsent(consent(metrics = listOf("no.such-metric")), start) }
    raises<ConfianceException.ConsentRefused>("a consent ending before it starts") {
        r.giveConsent(consent(validFrom = start.plusDays(2), validUntil = start), start)
    }
    raises<ConfianceException.BadArgument>("hold 'ninety days'") { r.giveConsent(consent(hold = "ninety days"), start) }
    raises<ConfianceException.BadArgument>("an instant before 1970") { r.giveConsent(consent(), Instant.parse("1960-01-01T00:00:00Z")) }
    // None of them gave consent.
    raises<ConfianceException.NoConsent>("a reading after refused consents") { r.record(MODE, IMPROVEMENT, Value.Category(1u), start) }
}

fun strictRecordErrorsChangeNothing(devices: Devices, start: Instant) {
    val device = consenting(devices, start)
    val before = device.counters()
    val cases: List<Pair<Class<out ConfianceException>, () -> Unit>> = listOf(
        ConfianceException.UnknownMetric::class.java to { device.record("thermostat.mood", IMPROVEMENT, Value.Category(1u), start) },
        ConfianceException.WrongTrack::class.java to { device.record(FAULT, "service", Value.Int(1), start) },
        ConfianceException.WrongTrack::class.java to { device.recordService(MODE, Value.Category(1u), start) },
        ConfianceException.WrongValue::class.java to { device.record(MODE, IMPROVEMENT, Value.Bool(true), start) },
        ConfianceException.LabelOutOfRange::class.java to { device.record(MODE, IMPROVEMENT, Value.Category(42u), start) },
        ConfianceException.ValueOutOfRange::class.java to { device.record("thermostat.setpoint", IMPROVEMENT, Value.Int(9999), start) },
        ConfianceException.PurposeNotAllowed::class.java to { device.record(MODE, "research", Value.Category(1u), start) },
        ConfianceException.NoConsent::class.java to { device.record(MODE, "grid-balancing", Value.Category(1u), start) },
        ConfianceException.BadArgument::class.java to { device.record("Not An Id!", IMPROVEMENT, Value.Category(1u), start) },
    )
    for ((k, case) in cases.withIndex()) raises(case.first, "case $k", case.second)
    expectEq(device.counters(), before, "counters after the refused readings")
    expectEq(device.flush(start).size, 0, "envelopes flushed after the refused readings")
}

fun lenientModeCountsPerMetricAndCause(devices: Devices, start: Instant) {
    val device = consenting(devices, start)
    device.setStrict(false)
    device.record("thermostat.mood", IMPROVEMENT, Value.Category(1u), start)
    device.record("thermostat.mood", IMPROVEMENT, Value.Category(1u), start)
    device.record(MODE, IMPROVEMENT, Value.Category(42u), start)
    device.record(MODE, IMPROVEMENT, Value.Category(1u), start)
    val errors = device.errors().associate { (it.metric to it.cause) to it.count }
    expectEq(errors, mapOf(("thermostat.mood" to "UnknownMetric") to 2u, (MODE to "LabelOutOfRange") to 1u), "errors")
    val c = device.counters()
    expectEq(listOf(c.recorded, c.unknownMetric, c.invalidValue), listOf(1u, 2u, 1u), "recorded, unknown metric, invalid value")
}

fun budgetExhausted(devices: Devices, start: Instant) {
    val device = consenting(devices, start)
    for (k in 0L until 8L) device.record(MODE, IMPROVEMENT, Value.Category(1u), start.plus(Duration.ofMinutes(k)))
    raises<ConfianceException.BudgetExhausted>("the ninth reading of the day") {
        device.record(MODE, IMPROVEMENT, Value.Category(1u), start.plusHours(1))
    }
    expectEq(device.counters().recorded, 8u, "readings recorded")
}

fun unknownReceiptAndEnvelope(devices: Devices, start: Instant) {
    val device = consenting(devices, start)
    raises<ConfianceException.UnknownReceipt>("withdrawing an unknown receipt") { device.withdrawConsent(ByteArray(32), start) }
    raises<ConfianceException.BadArgument>("a receipt id of 31 bytes") { device.withdrawConsent(ByteArray(31), start) }
    raises<ConfianceException.BadArgument>("the id of bytes not a receipt") { receiptId("not a receipt".toByteArray()) }
    val receipt = device.giveConsent(consent(purpose = "grid-balancing"), start)
    device.withdrawConsent(receiptId(receipt), start.plusHours(1))
    raises<ConfianceException.UnknownReceipt>("withdrawing a receipt twice") { device.withdrawConsent(receiptId(receipt), start.plusHours(2)) }

    device.record(MODE, IMPROVEMENT, Value.Category(1u), start)
    val frames = device.flush(start.plusHours(3))
    expectEq(frames.size, 1, "envelopes flushed")
    val frame = frames[0]
    // An envelope the outbox does not hold is a notice, not an error: false, nothing changed.
    expectEq(device.acknowledge(frame.copyOf(frame.size - 1)), false, "acknowledging a truncated envelope")
    expectEq(device.pendingEnvelopes(), 1uL, "pending after acknowledging another envelope")
    expectEq(device.acknowledge(frame), true, "acknowledging the envelope")
    expectEq(device.acknowledge(frame), false, "acknowledging it twice")
    expectEq(device.pendingEnvelopes(), 0uL, "pending after the acknowledgement")
}

fun stateKeptAcrossARestart(server: Server, devices: Devices, start: Instant) {
    val storage = MemoryStorage()
    val secrets = randomSecret() to randomSecret()
    // The first run spends the day's budget (8 readings) and seals them; the recorder is
    // closed (AutoCloseable) before the upload, as when the app is killed.
    val frames = devices.make(storage = storage, secrets = secrets).use { first ->
        expectEq(server.post("/v1/receipts", first.giveConsent(consent(), start)).first, 201, "receipt posted")
        for (k in 0L until 8L) first.record(MODE, IMPROVEMENT, Value.Category(1u), start.plus(Duration.ofMinutes(k)))
        val frames = first.flush(start.plusHours(1))
        expectEq(frames.size, 1, "envelopes flushed")
        expect(storage.saves > 0) { "nothing saved" }
        raises<IllegalStateException>("a call on the closed recorder") { first.close(); first.pendingEnvelopes() }
        frames
    }
    // The recorder restarts from the storage: its outbox still holds the envelope, which
    // it acknowledges once the server took it, and the budget spent before the restart
    // stays spent.
    val again = devices.make(storage = storage, secrets = secrets)
    expectEq(again.pendingEnvelopes(), 1uL, "envelopes pending after the restart")
    raises<ConfianceException.BudgetExhausted>("a ninth reading after the restart") {
        again.record(MODE, IMPROVEMENT, Value.Category(1u), start.plusHours(2))
    }
    val (status, answer) = server.post("/v1/envelopes", frames[0])
    expect(status == 201 && answer["reports"].long == 8L) { "envelope uploaded: $status $answer" }
    expectEq(again.acknowledge(frames[0]), true, "acknowledged after the restart")
    expectEq(again.pendingEnvelopes(), 0uL, "envelopes pending after the acknowledgement")
}

fun aFailingStorageIsCountedNotThrown(devices: Devices, start: Instant) {
    for (error in listOf(ConfianceException.StorageFailed("disk full"), java.io.IOException("disk full"))) {
        val r = devices.make(storage = BrokenStorage(error), strict = false)
        r.giveConsent(consent(metrics = listOf(MODE, "thermostat.setpoint")), start)
        // A metric without a budget is recorded; one with a budget fails closed (its
        // charge could not be kept), counted.
        r.record("thermostat.setpoint", IMPROVEMENT, Value.Int(200), start)
        r.record(MODE, IMPROVEMENT, Value.Category(1u), start)
        val c = r.counters()
        expect(c.recorded == 1u && c.budgetUnsaved == 1u && c.storageFailed >= 2u) { "${error.javaClass.simpleName}: $c" }
    }
}
