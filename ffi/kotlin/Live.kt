// A device end to end (ffi/python/tests/test_live.py).

import java.time.Duration
import java.time.Instant
import uniffi.confiance.ConfianceException
import uniffi.confiance.ErrorCount
import uniffi.confiance.Value
import uniffi.confiance.receiptId

/** How many thermostat.mode reports the server holds for calora (0 when it holds none,
 *  404, or fewer than the catalogue's release minimum of 30, 422). */
fun released(server: Server): Long {
    val body = """{"metric": "thermostat.mode", "recipient": "calora"}""".toByteArray()
    val (status, answer) = server.request("POST", "/v1/releases", body, "application/json", auth = true)
    if (status == 404 && answer["error"]["code"].str == "nothing_to_release") return 0
    if (status == 422 && answer["error"]["code"].str == "too_few_reports") return 0
    expectEq(status, 200, "POST /v1/releases ($answer)")
    return answer["n"].long
}

/** How many subjects have a consent in force now that lets calora see fault codes. */
fun faultCodeSubjects(server: Server): Long =
    server.get("/v1/metrics/$FAULT/who-sees", auth = true)["entries"].list
        .filter { it["recipient"].str == "calora" }
        .sumOf { it["subjects_in_window"].long }

fun aDeviceEndToEnd(server: Server, devices: Devices, start: Instant) {
    val modeBefore = released(server)
    val device = devices.make()
    val stats = device.giveConsent(consent(), start)
    val service = device.giveConsent(consent(purpose = "service", metrics = listOf(FAULT), hold = "P1Y"), start)
    expectEq(listOf(stats, service).map { server.post("/v1/receipts", it).first }, listOf(201, 201), "receipts posted")

    // Four days of a reading an hour; the catalogue's budget (ε = 8 a day, 1 a report)
    // stops the ninth reading of each day, which strict mode throws.
    var exhausted = 0
    var reports = 0L
    for (day in 0L until 4L) {
        for (hour in 0L until 24L) {
            val t = start.plusDays(day).plusHours(hour).plus(Duration.ofMinutes(30))
            try {
                device.record(MODE, IMPROVEMENT, Value.Category(2u), t)
            } catch (e: ConfianceException.BudgetExhausted) {
                exhausted++
            }
        }
        if (day == 1L) device.recordService(FAULT, Value.Int(42), start.plusDays(day))
        val frames = device.flush(start.plusDays(day + 1).minusSeconds(1))
        expect(frames.isNotEmpty()) { "day $day: nothing flushed" }
        for (frame in frames) {
            val (status, answer) = server.post("/v1/envelopes", frame)
            expectEq(status, 201, "day $day: envelope uploaded ($answer)")
            expectEq(answer["refused"].list.size, 0, "day $day: reports refused ($answer)")
            reports += answer["reports"].long
            expectEq(device.acknowledge(frame), true, "day $day: acknowledged")
            expectEq(device.acknowledge(frame), false, "day $day: acknowledged a second time")
        }
        expectEq(device.pendingEnvelopes(), 0uL, "day $day: envelopes pending after the acknowledgements")
    }
    expectEq(exhausted, 4 * 16, "readings stopped by the budget")
    expectEq(reports, 4L * 8 + 1, "reports the server accepted")
    val c = device.counters()
    expectEq(listOf(c.recorded, c.budgetExhausted, c.storageFailed), listOf(33u, 0u, 0u), "recorded, budget exhausted, storage failed")
    expectEq(device.errors(), emptyList<ErrorCount>(), "errors counted (strict mode throws instead)")

    // The server kept all 32 statistics; the device is one more subject for fault codes.
    expectEq(released(server), modeBefore + 32, "thermostat.mode reports the server releases")
    val subjects = faultCodeSubjects(server)
    expect(subjects >= 1) { "no subject sees fault codes" }

    // The owner withdraws the service consent: the server no longer counts the device.
    val withdrawal = device.withdrawConsent(receiptId(service), start.plusDays(4))
    val (status, answer) = server.post("/v1/withdrawals", withdrawal)
    expect(status == 201 && answer["withdrawn"].v == true) { "withdrawal: $status $answer" }
    expectEq(faultCodeSubjects(server), subjects - 1, "subjects seeing fault codes after the withdrawal")
    val e = raises<ConfianceException.NoConsent>("a fault code after the withdrawal") {
        device.recordService(FAULT, Value.Int(7), start.plusDays(4).plusHours(1))
    }
    expect(FAULT in e.detail) { "the detail does not name the metric: ${e.detail}" }
}
