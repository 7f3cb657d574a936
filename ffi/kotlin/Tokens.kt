// Report tokens (ffi/python/tests/test_tokens.py).

import java.time.Duration
import java.time.Instant
import uniffi.confiance.ConfianceException
import uniffi.confiance.Recorder
import uniffi.confiance.TokenFetch
import uniffi.confiance.Value
import uniffi.confiance.delegateDevice
import uniffi.confiance.devicePublicKey
import uniffi.confiance.randomSecret
import uniffi.confiance.revokeDevice
import uniffi.confiance.subjectIdOfKey

class Fetched(val plan: TokenFetch, val status: Int, val added: UInt?, val answer: J?)

/** What identifies a plan entry (TokenFetch's own equality compares `scope` by identity). */
fun TokenFetch.key() = listOf(scope.hex(), recipients, purpose, period, count, keyQuery)

/** Fetches every planned scope's tokens: the key (`GET /v1/token-keys`), the request
 *  (`POST /v1/tokens`), the answer taken when it is 200. */
fun fetch(server: Server, device: Recorder, t: Instant): List<Fetched> =
    device.tokensToFetch(t, SIX_HOURS).map { f ->
        val key = server.get("/v1/token-keys?" + f.keyQuery)
        expectEq(
            listOf(key["recipients"].list.map { it.str }, key["purpose"].str, key["period"].long),
            listOf(f.recipients, f.purpose, f.period.toLong()),
            "the key served for ${f.keyQuery}",
        )
        // The key as served: its hex digits (its 32 bytes would do as well).
        val (status, body) = server.raw("POST", "/v1/tokens", device.tokenRequest(f.scope, key["public_key"].str.toByteArray(), f.count))
        if (status == 200) Fetched(f, status, device.takeTokenResponse(body), null) else Fetched(f, status, null, J.parse(String(body)))
    }

fun aDeviceGetsTokensAndTheServerKeepsItsEnvelope(server: Server, devices: Devices) {
    val t = Instant.now().minusSeconds(5)
    val device = devices.make()
    expectEq(server.post("/v1/delegations", device.enrollment(t, null, t)).first, 201, "enrolment posted")
    expectEq(server.post("/v1/receipts", device.giveConsent(consent(), t)).first, 201, "receipt posted")
    device.requireTokens(true)

    // No token yet: the reading waits in the queue, counted.
    device.record(MODE, IMPROVEMENT, Value.Category(2u), t)
    expectEq(device.flush(t).size, 0, "envelopes flushed without a token")
    expectEq(device.counters().waitingForToken, 1u, "reports waiting for a token")

    val fetched = fetch(server, device, t)
    val today = fetched.filter { it.plan.period == (t.epochSecond / 86400).toULong() }
    expectEq(today.size, 1, "plan entries for today (${fetched.map { it.plan.key() }})")
    val plan = today[0].plan
    expect(today[0].status == 200 && today[0].added == plan.count && plan.count >= 1u) {
        "tokens for today: ${today[0].status} ${today[0].answer}, ${today[0].added} added of ${plan.count}"
    }
    expectEq(device.tokensHeld(plan.scope), plan.count, "tokens held")
    expectEq(device.tokensToFetch(t, SIX_HOURS).size, 0, "plan entries left (every one asked for)")

    // The waiting reading goes out with a token, and the server keeps it.
    val frames = device.flush(Instant.now())
    expectEq(frames.size, 1, "envelopes flushed with a token")
    expectEq(device.tokensHeld(plan.scope), plan.count - 1u, "tokens held after the flush")
    val (status, answer) = server.post("/v1/envelopes", frames[0])
    expect(status == 201 && answer["reports"].long == 1L && answer["refused"].list.isEmpty()) { "envelope: $status $answer" }
    expectEq(device.acknowledge(frames[0]), true, "acknowledged")
    val c = device.counters()
    expectEq(listOf(c.envelopesSealed, c.tokenFailed, c.waitingForToken), listOf(1u, 0u, 1u), "sealed, token failed, waiting")
}

fun aDelegatedDeviceGetsTokensForItsOwner(server: Server, devices: Devices) {
    val t = Instant.now().minusSeconds(5)
    // The owner's phone app holds the subject key and delegates the thermostat's key.
    val owner = randomSecret()
    val deviceKey = randomSecret()
    val delegation = delegateDevice(owner, devicePublicKey(deviceKey), t, null, t)
    raises<ConfianceException.BadDelegation>("another device's delegation") {
        devices.make(secrets = randomSecret() to randomSecret(), delegation = delegation)
    }
    val device = devices.make(secrets = deviceKey to randomSecret(), delegation = delegation)
    expect(device.enrollment(t, null, t).contentEquals(delegation)) { "the enrolment is not the delegation" }
    expectEq(device.subjectId(), subjectIdOfKey(owner), "the delegated device's subject id")

    // Before the delegation is in, the device is not enrolled: its receipt is refused.
    val receipt = device.giveConsent(consent(), t)
    val (status, answer) = server.post("/v1/receipts", receipt)
    expect(status >= 400 && answer["error"]["code"].str == "not_enrolled") { "receipt before the delegation: $status $answer" }
    expectEq(server.post("/v1/delegations", delegation).first, 201, "delegation posted")
    expectEq(server.post("/v1/receipts", receipt).first, 201, "receipt posted after the delegation")

    device.requireTokens(true)
    device.record(MODE, IMPROVEMENT, Value.Category(0u), t)
    val fetched = fetch(server, device, t)
    expect(fetched.isNotEmpty() && fetched.all { it.status == 200 && it.added == it.plan.count }) {
        "tokens fetched: ${fetched.map { "${it.status} ${it.answer} ${it.added}/${it.plan.count}" }}"
    }
    val frames = device.flush(Instant.now())
    expectEq(frames.size, 1, "envelopes flushed")
    val (s, a) = server.post("/v1/envelopes", frames[0])
    expect(s == 201 && a["reports"].long == 1L && a["refused"].list.isEmpty()) { "envelope: $s $a" }
}

fun withoutATokenTheServerRefusesTheEnvelope(server: Server, devices: Devices) {
    val t = Instant.now()
    val device = devices.make()
    expectEq(server.post("/v1/receipts", device.giveConsent(consent(), t)).first, 201, "receipt posted")
    device.record(MODE, IMPROVEMENT, Value.Category(1u), t) // tokens not required here
    val frames = device.flush(t)
    expectEq(frames.size, 1, "envelopes flushed")
    val (status, answer) = server.post("/v1/envelopes", frames[0])
    expect(status >= 400 && answer["error"]["code"].str == "token_missing") { "envelope without a token: $status $answer" }
}

fun aDeviceNotEnrolledIsRefusedAndAsksAgain(server: Server, devices: Devices) {
    val t = Instant.now()
    val device = devices.make() // neither its receipt nor its enrolment posted
    device.giveConsent(consent(), t)
    device.requireTokens(true)
    device.record(MODE, IMPROVEMENT, Value.Category(1u), t)
    val fetched = fetch(server, device, t)
    expect(fetched.isNotEmpty() && fetched.all { it.status == 403 && it.answer!!["error"]["code"].str == "not_enrolled" && it.answer["error"]["retry"].v == true }) {
        "tokens fetched: ${fetched.map { "${it.status} ${it.answer}" }}"
    }
    expectEq(device.tokensToFetch(t, SIX_HOURS).size, 0, "plan entries left (asked for, not answered)")
    for (f in fetched) {
        device.forgetTokenRequests(f.plan.scope)
        expectEq(device.tokensHeld(f.plan.scope), 0u, "tokens held")
    }
    expectEq(device.tokensToFetch(t, SIX_HOURS).map { it.key() }, fetched.map { it.plan.key() }, "the plan once the requests are forgotten")
}

fun badTokenInputChangesNothing(server: Server, devices: Devices) {
    val t = Instant.now()
    val device = devices.make()
    expectEq(server.post("/v1/receipts", device.giveConsent(consent(), t)).first, 201, "receipt posted")
    device.requireTokens(true)
    device.record(MODE, IMPROVEMENT, Value.Category(1u), t)
    val plan = device.tokensToFetch(t, SIX_HOURS)
    expect(plan.isNotEmpty()) { "no plan" }
    val f = plan[0]
    val key = server.get("/v1/token-keys?" + f.keyQuery)["public_key"].str
    for (bad in listOf(ByteArray(0), f.scope.copyOf(f.scope.size - 1), f.scope + 0.toByte(), ByteArray(40) { 0xff.toByte() })) {
        raises<ConfianceException.BadTokenScope>("tokenRequest, scope of ${bad.size} bytes") { device.tokenRequest(bad, key.toByteArray(), f.count) }
        raises<ConfianceException.BadTokenScope>("tokensHeld, scope of ${bad.size} bytes") { device.tokensHeld(bad) }
        raises<ConfianceException.BadTokenScope>("forgetTokenRequests, scope of ${bad.size} bytes") { device.forgetTokenRequests(bad) }
    }
    for (bad in listOf(ByteArray(0), hex(key).copyOf(31), ByteArray(32) { 0xff.toByte() }, "zz".repeat(32).toByteArray())) {
        raises<ConfianceException.BadTokenKey>("a key of ${bad.size} bytes") { device.tokenRequest(f.scope, bad, f.count) }
    }
    for (bad in listOf(0u, 1025u)) {
        raises<ConfianceException.BadArgument>("a count of $bad") { device.tokenRequest(f.scope, key.toByteArray(), bad) }
    }
    raises<ConfianceException.BadTokenResponse>("an answer not a response") { device.takeTokenResponse("not a response".toByteArray()) }
    raises<ConfianceException.ConsentRefused>("an enrolment ending before it starts") { device.enrollment(t, t.minus(Duration.ofDays(1)), t) }
    // Nothing was asked for or added: the plan is the same, no token held, none failed.
    expectEq(device.tokensToFetch(t, SIX_HOURS).map { it.key() }, plan.map { it.key() }, "the plan after bad input")
    expectEq(device.tokensHeld(f.scope), 0u, "tokens held after bad input")
    expectEq(device.counters().tokenFailed, 0u, "token failures")

    // A tampered answer is refused and adds nothing; the real one is taken.
    val (status, body) = server.raw("POST", "/v1/tokens", device.tokenRequest(f.scope, key.toByteArray(), f.count))
    expectEq(status, 200, "POST /v1/tokens (${String(body)})")
    val tampered = body.copyOf()
    tampered[tampered.size - 1] = (tampered.last().toInt() xor 1).toByte() // the proof's last byte
    raises<ConfianceException.BadTokenResponse>("a tampered answer") { device.takeTokenResponse(tampered) }
    expectEq(device.tokensHeld(f.scope), 0u, "tokens held after the tampered answer")
    expectEq(device.takeTokenResponse(body), f.count, "tokens added by the answer")
    expectEq(device.tokensHeld(f.scope), f.count, "tokens held")
}

/** A device its owner's app delegated at `t`, the delegation posted: the owner's subject
 *  key, the device's public key, the device. */
fun ownedDevice(server: Server, devices: Devices, t: Instant): Triple<ByteArray, ByteArray, Recorder> {
    val owner = randomSecret()
    val deviceKey = randomSecret()
    val public = devicePublicKey(deviceKey)
    val delegation = delegateDevice(owner, public, t, null, t)
    val device = devices.make(secrets = deviceKey to randomSecret(), delegation = delegation)
    expectEq(server.post("/v1/delegations", delegation).first, 201, "delegation posted")
    return Triple(owner, public, device)
}

fun anOwnerRevokesALostDevice(server: Server, devices: Devices) {
    val t = Instant.now().minusSeconds(5)
    val (owner, public, device) = ownedDevice(server, devices, t)
    expectEq(server.post("/v1/receipts", device.giveConsent(consent(), t)).first, 201, "receipt posted")
    device.requireTokens(true)
    device.record(MODE, IMPROVEMENT, Value.Category(0u), t)
    val fetched = fetch(server, device, t)
    expect(fetched.isNotEmpty() && fetched.all { it.status == 200 }) { "tokens fetched: ${fetched.map { "${it.status} ${it.answer}" }}" }

    // The thermostat is lost: the owner's app revokes it from now on.
    val lost = Instant.now()
    raises<ConfianceException.BadArgument>("a subject key of 31 bytes") { revokeDevice(owner.copyOf(31), public, lost, lost) }
    raises<ConfianceException.BadArgument>("a device key of 33 bytes") { revokeDevice(owner, public + 0.toByte(), lost, lost) }
    val (s, a) = server.post("/v1/revocations", revokeDevice(randomSecret(), public, lost, lost))
    expect(s == 403 && a["error"]["code"].str == "not_enrolled") { "a stranger's revocation: $s $a" }
    val revocation = revokeDevice(owner, public, lost, lost)
    expect(revocation.contentEquals(revokeDevice(owner, public, lost, lost))) { "the same revocation, other bytes" }
    val (status, answer) = server.post("/v1/revocations", revocation)
    expect(status == 201 && answer["device"].str == public.hex() && answer["revoked"].v == true) { "revocation: $status $answer" }

    // From then, its receipts and token requests are refused, for good.
    val (rs, ra) = server.post("/v1/receipts", device.giveConsent(consent(), Instant.now()))
    expect(rs == 403 && ra["error"]["code"].str == "delegation_revoked") { "a receipt after the revocation: $rs $ra" }
    val plan = fetched[0].plan
    val key = server.get("/v1/token-keys?" + plan.keyQuery)["public_key"].str
    val (ts, tb) = server.raw("POST", "/v1/tokens", device.tokenRequest(plan.scope, key.toByteArray(), 1u))
    val ta = J.parse(String(tb))
    expect(ts == 403 && ta["error"]["code"].str == "delegation_revoked" && ta["error"]["retry"].v == false) {
        "a token request after the revocation: $ts $ta"
    }
}

fun theSubjectIdIsTheOneSubjectAccessListsTheDeviceUnder(server: Server, devices: Devices) {
    val t = Instant.now().minusSeconds(5)
    // A device its own subject.
    val deviceKey = randomSecret()
    val device = devices.make(secrets = deviceKey to randomSecret())
    expectEq(server.post("/v1/delegations", device.enrollment(t, null, t)).first, 201, "enrolment posted")
    val subject = device.subjectId()
    expect(subject == subjectIdOfKey(deviceKey) && subject.length == 64) { "subject id $subject" }
    val access = server.get("/v1/subjects/$subject/access", auth = true)
    expect(access["subject"].str == subject && access["devices"].list.map { it["device"].str } == listOf(devicePublicKey(deviceKey).hex())) {
        "subject access: $access"
    }

    // A device its owner delegated: the owner's id, which the owner's app reads from its key.
    val (owner, public, delegated) = ownedDevice(server, devices, t)
    val ownerId = subjectIdOfKey(owner)
    expectEq(delegated.subjectId(), ownerId, "the delegated device's subject id")
    val listed = server.get("/v1/subjects/$ownerId/access", auth = true)["devices"].list
    expect(listed.size == 1 && listed[0]["device"].str == public.hex() && listed[0]["revoked_at"].v == null) { "subject access: $listed" }
    // Revoked: subject access shows from when.
    val lost = Instant.now()
    expectEq(server.post("/v1/revocations", revokeDevice(owner, public, lost, lost)).first, 201, "revocation posted")
    val after = server.get("/v1/subjects/$ownerId/access", auth = true)["devices"].list
    expect(after.size == 1 && after[0]["revoked_at"].v == lost.epochSecond) { "subject access after the revocation: $after" }
    raises<ConfianceException.BadArgument>("a subject key of 16 bytes") { subjectIdOfKey(owner.copyOf(16)) }
}
