// What the checks share: assertions, the servers (HTTP with java.net.http, their JSON
// answers read by a small parser, as the JDK has none), in-memory and failing storages,
// and new devices of a server.

import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.time.Duration
import java.time.Instant
import uniffi.confiance.ConsentRequest
import uniffi.confiance.HostStorage
import uniffi.confiance.LimitsPreset
import uniffi.confiance.Recorder
import uniffi.confiance.randomSecret

const val MODE = "thermostat.mode"
const val FAULT = "thermostat.fault-code"
const val IMPROVEMENT = "product-improvement"
const val SIX_HOURS: ULong = 21600u

// ---- Checking ----

class CheckFailed(message: String) : Exception(message)

fun expect(condition: Boolean, what: () -> String) {
    if (!condition) throw CheckFailed(what())
}

fun <T> expectEq(actual: T, expected: T, what: String) {
    if (actual != expected) throw CheckFailed("$what: $actual, expected $expected")
}

/** Runs `block`, which must throw an `error`; returns what it threw. */
fun <T : Throwable> raises(error: Class<T>, what: String, block: () -> Unit): T {
    try {
        block()
    } catch (e: Throwable) {
        if (error.isInstance(e)) return error.cast(e)
        throw CheckFailed("$what: threw ${e.javaClass.name} ($e), not ${error.simpleName}")
    }
    throw CheckFailed("$what: threw nothing, not ${error.simpleName}")
}

inline fun <reified T : Throwable> raises(what: String, noinline block: () -> Unit): T = raises(T::class.java, what, block)

// ---- JSON (the server's answers) and hex ----

/** A JSON value: `Map`, `List`, `String`, `Long`, `Double`, `Boolean` or null. */
class J(val v: Any?) {
    operator fun get(key: String): J = J((v as Map<*, *>)[key])
    operator fun get(index: Int): J = J((v as List<*>)[index])
    val str: String get() = v as String
    val long: Long get() = v as Long
    val list: List<J> get() = (v as List<*>).map { J(it) }
    override fun toString() = v.toString()

    companion object {
        fun parse(text: String): J {
            val p = JsonParser(text)
            val v = p.value()
            p.end()
            return J(v)
        }
    }
}

class JsonParser(private val s: String) {
    private var i = 0

    private fun ws() {
        while (i < s.length && s[i].isWhitespace()) i++
    }

    private fun next(): Char {
        ws()
        if (i >= s.length) throw IllegalArgumentException("JSON ends early: $s")
        return s[i++]
    }

    fun end() {
        ws()
        if (i != s.length) throw IllegalArgumentException("JSON has more after its value: $s")
    }

    fun value(): Any? {
        ws()
        return when (s.getOrNull(i)) {
            '{' -> {
                i++
                val out = LinkedHashMap<String, Any?>()
                ws()
                if (s.getOrNull(i) == '}') { i++; return out }
                do {
                    ws()
                    val key = string()
                    if (next() != ':') throw IllegalArgumentException("no ':' in $s")
                    out[key] = value()
                } while (next() == ',')
                if (s[i - 1] != '}') throw IllegalArgumentException("no '}' in $s")
                out
            }
            '[' -> {
                i++
                val out = ArrayList<Any?>()
                ws()
                if (s.getOrNull(i) == ']') { i++; return out }
                do out.add(value()) while (next() == ',')
                if (s[i - 1] != ']') throw IllegalArgumentException("no ']' in $s")
                out
            }
            '"' -> string()
            else -> {
                val start = i
                while (i < s.length && (s[i].isLetterOrDigit() || s[i] in "+-.")) i++
                when (val word = s.substring(start, i)) {
                    "true" -> true
                    "false" -> false
                    "null" -> null
                    else -> word.toLongOrNull() ?: word.toDoubleOrNull() ?: throw IllegalArgumentException("not JSON: $word")
                }
            }
        }
    }

    private fun string(): String {
        if (s[i++] != '"') throw IllegalArgumentException("not a string at $i: $s")
        val out = StringBuilder()
        while (s[i] != '"') {
            val c = s[i++]
            if (c != '\\') { out.append(c); continue }
            when (val e = s[i++]) {
                'n' -> out.append('\n')
                't' -> out.append('\t')
                'r' -> out.append('\r')
                'b' -> out.append('\b')
                'f' -> out.append('\u000c')
                'u' -> { out.append(s.substring(i, i + 4).toInt(16).toChar()); i += 4 }
                else -> out.append(e)
            }
        }
        i++
        return out.toString()
    }
}

fun hex(s: String) = ByteArray(s.length / 2) { s.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

fun ByteArray.hex() = joinToString("") { "%02x".format(it) }

// ---- The servers and the devices ----

class Server(url: String, private val token: String) {
    private val url = url.trimEnd('/')
    private val http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()

    /** Returns (HTTP status, the answer's bytes). */
    fun raw(method: String, path: String, body: ByteArray?, type: String = "application/octet-stream", auth: Boolean = false): Pair<Int, ByteArray> {
        val request = HttpRequest.newBuilder(URI.create(url + path)).timeout(Duration.ofSeconds(10)).header("content-type", type)
        if (auth) request.header("authorization", "Bearer $token")
        request.method(method, if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofByteArray(body))
        val answer = http.send(request.build(), HttpResponse.BodyHandlers.ofByteArray())
        return answer.statusCode() to answer.body()
    }

    /** Returns (HTTP status, the JSON answer). */
    fun request(method: String, path: String, body: ByteArray?, type: String = "application/octet-stream", auth: Boolean = false): Pair<Int, J> {
        val (status, bytes) = raw(method, path, body, type, auth)
        return status to if (bytes.isEmpty()) J(emptyMap<String, Any?>()) else J.parse(String(bytes, Charsets.UTF_8))
    }

    fun post(path: String, body: ByteArray) = request("POST", path, body)

    fun get(path: String, auth: Boolean = false): J {
        val (status, answer) = request("GET", path, null, auth = auth)
        expectEq(status, 200, "GET $path ($answer)")
        return answer
    }
}

/** The recorder's state in memory; `saves` counts the saves. */
class MemoryStorage : HostStorage {
    var data: ByteArray? = null
    var saves = 0

    override fun load() = data

    override fun save(bytes: ByteArray) {
        data = bytes.copyOf()
        saves++
    }
}

/** A storage whose every call throws `error`. */
class BrokenStorage(private val error: Exception) : HostStorage {
    override fun load(): ByteArray? = throw error

    override fun save(bytes: ByteArray) = throw error
}

/** Makes new devices for `server`: fresh secrets, its catalogue and key, phone limits. */
class Devices(server: Server) {
    val catalogue = hex(server.get("/v1/catalogue")["canonical"].str)
    val keyConfig = hex(server.get("/v1/keys")["keys"][0]["config"].str)

    fun make(
        storage: HostStorage = MemoryStorage(),
        strict: Boolean = true,
        secrets: Pair<ByteArray, ByteArray> = randomSecret() to randomSecret(),
        delegation: ByteArray? = null,
    ): Recorder {
        val (deviceKey, pseudonymSecret) = secrets
        val r = if (delegation == null) {
            Recorder(catalogue, deviceKey, pseudonymSecret, "calora", keyConfig, LimitsPreset.PHONE, storage)
        } else {
            Recorder.delegated(catalogue, deviceKey, pseudonymSecret, delegation, "calora", keyConfig, LimitsPreset.PHONE, storage)
        }
        r.setStrict(strict)
        return r
    }
}

fun consent(
    recipient: String = "calora",
    purpose: String = IMPROVEMENT,
    metrics: List<String> = listOf(MODE),
    hold: String = "P90D",
    validFrom: Instant? = null,
    validUntil: Instant? = null,
) = ConsentRequest(recipient, purpose, metrics, hold, validFrom, validUntil)

fun Instant.plusDays(days: Long): Instant = plus(Duration.ofDays(days))

fun Instant.plusHours(hours: Long): Instant = plus(Duration.ofHours(hours))
