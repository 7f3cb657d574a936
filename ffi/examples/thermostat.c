/*
 * A thermostat's firmware loop in C, on the confiance C ABI (include/confiance.h).
 *
 *   thermostat CATALOGUE.bin KEY_CONFIG_HEX STATE_FILE [SERVER_URL [tokens]]
 *
 * CATALOGUE.bin is the catalogue's canonical bytes (`confiance catalogue compile`),
 * KEY_CONFIG_HEX the aggregator's key config (`confiance keygen --json`, "key_config"),
 * STATE_FILE where the recorder keeps its state between runs. The loop asks consent,
 * records the heating mode every hour for two days and a fault code once, and at the end
 * of each day flushes and uploads its envelopes; the consent receipts go first. With
 * SERVER_URL (a `confiance serve`), uploads are POSTs made with curl(1), and an envelope
 * is acknowledged only once the server answered 201; without it, nothing is sent and
 * everything stays in the outbox. It then withdraws the service consent, and exits 0
 * only if every check passed (printed as one JSON line).
 *
 * With `tokens` (a server started with --token-secret, which requires report tokens),
 * it runs with_tokens() instead: a new device enrols, sees its reading wait for a token,
 * fetches its tokens (GET /v1/token-keys, POST /v1/tokens) and sends the reading with one;
 * then, lost, it is revoked by its subject key (POST /v1/revocations) and its next token
 * request is refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "confiance.h"

#define CHECK(call)                                                                    \
    do {                                                                               \
        ConfianceStatus s_ = (call);                                                   \
        if (s_ != CONFIANCE_STATUS_OK) {                                               \
            fprintf(stderr, "%s:%d: %s -> status %d\n", __FILE__, __LINE__, #call, s_); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

/* The host's storage: one file, read whole at start, replaced at each save. */
struct file_storage {
    const char *path;
    uint8_t *bytes;
    size_t len;
};

static int32_t storage_load(void *context, const uint8_t **bytes, size_t *len) {
    struct file_storage *fs = context;
    FILE *f = fopen(fs->path, "rb");
    free(fs->bytes);
    fs->bytes = NULL;
    fs->len = 0;
    if (!f) { /* nothing saved yet */
        *bytes = NULL;
        *len = 0;
        return 0;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    fs->bytes = malloc(size > 0 ? (size_t)size : 1);
    fs->len = fread(fs->bytes, 1, (size_t)size, f);
    fclose(f);
    *bytes = fs->bytes;
    *len = fs->len;
    return fs->len == (size_t)size ? 0 : 1;
}

static int32_t storage_save(void *context, const uint8_t *bytes, size_t len) {
    struct file_storage *fs = context;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", fs->path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return 1;
    size_t written = fwrite(bytes, 1, len, f);
    if (fclose(f) != 0 || written != len) return 1;
    return rename(tmp, fs->path) == 0 ? 0 : 1;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)size);
    *len = fread(b, 1, (size_t)size, f);
    fclose(f);
    return b;
}

static size_t from_hex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = strlen(hex) / 2;
    if (n > cap) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return 0;
        out[i] = (uint8_t)v;
    }
    return n;
}

/* Reads a whole file into a new buffer (NULL if it cannot be read). */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(size > 0 ? (size_t)size + 1 : 1);
    *len = fread(b, 1, size > 0 ? (size_t)size : 0, f);
    b[*len] = 0; /* NUL-terminated too, for a JSON answer */
    fclose(f);
    return b;
}

/* A request to SERVER_URL + path with curl: a GET when `bytes` is NULL, else a POST of
 * `len` bytes. Returns the HTTP status (0: none); with `answer`, sets `*answer` to the
 * body (NUL-terminated, to free) and `*answer_len` to its length. */
static int http(const char *server, const char *path, const uint8_t *bytes, size_t len, uint8_t **answer,
                size_t *answer_len) {
    if (answer) *answer = NULL;
    if (!server) return 0;
    char upload[] = "/tmp/confiance-upload-XXXXXX", download[] = "/tmp/confiance-answer-XXXXXX";
    int up = bytes ? mkstemp(upload) : -1, down = answer ? mkstemp(download) : -1;
    if ((bytes && up < 0) || (answer && down < 0)) return 0;
    if (bytes) {
        FILE *f = fdopen(up, "wb");
        fwrite(bytes, 1, len, f);
        fclose(f);
    }
    if (answer) close(down);
    char data[128] = "", cmd[8192];
    if (bytes) snprintf(data, sizeof data, "-H 'content-type: application/octet-stream' --data-binary @%s", upload);
    snprintf(cmd, sizeof cmd, "curl -s -o %s -w '%%{http_code}' %s '%s%s'", answer ? download : "/dev/null", data,
             server, path);
    FILE *p = popen(cmd, "r");
    int code = 0;
    if (p) {
        if (fscanf(p, "%d", &code) != 1) code = 0;
        pclose(p);
    }
    if (bytes) remove(upload);
    if (answer) {
        *answer = slurp(download, answer_len);
        remove(download);
    }
    return code;
}

/* POSTs `len` bytes to SERVER_URL + path; returns the HTTP status (0: none). */
static int post(const char *server, const char *path, const uint8_t *bytes, size_t len) {
    return http(server, path, bytes, len, NULL, NULL);
}

/* Copies out with the size the library asks for: `call(buf, cap, &len)` once into `*buf`
 * (of `*cap` bytes), and again once grown if it answered BUFFER_TOO_SMALL. */
#define GROWING(buf, cap, len, call)                                          \
    do {                                                                      \
        ConfianceStatus g_ = (call);                                          \
        if (g_ == CONFIANCE_STATUS_BUFFER_TOO_SMALL) {                        \
            (buf) = realloc((buf), (len));                                    \
            (cap) = (len);                                                    \
            g_ = (call);                                                      \
        }                                                                     \
        CHECK(g_);                                                            \
    } while (0)

/* With report tokens (a server started with --token-secret): a new device enrols,
 * consents, records a reading now, sees it wait for a token, fetches the tokens its
 * plan asks for, and sends the reading with one (acknowledged twice, as after a retried
 * upload: the second time is a notice). Then it is lost: its subject key (its own key:
 * it is its own subject) revokes it, and its next token request is refused for good.
 * Returns 0 if every check passed. */
static int with_tokens(const uint8_t *catalogue, size_t catalogue_len, const uint8_t *key_config,
                       size_t key_config_len, const char *state, const char *server) {
    uint8_t device_key[32], pseudonym_secret[32];
    CHECK(confiance_random(device_key, sizeof device_key));
    CHECK(confiance_random(pseudonym_secret, sizeof pseudonym_secret));
    struct file_storage fs = {state, NULL, 0};
    ConfianceStorage storage = {&fs, storage_load, storage_save};
    ConfianceRecorder *thermostat = NULL;
    CHECK(confiance_recorder_new(catalogue, catalogue_len, device_key, pseudonym_secret, "calora", key_config,
                                 key_config_len, storage, CONFIANCE_LIMITS_MICROCONTROLLER, &thermostat));
    CHECK(confiance_set_strict(thermostat, 1));
    const uint64_t now = (uint64_t)time(NULL) - 5;

    /* Enrolment (the device is its own subject), then the owner's consent. */
    uint8_t signed_bytes[2048];
    size_t signed_len;
    CHECK(confiance_enrollment(thermostat, 0, 0, now, signed_bytes, sizeof signed_bytes, &signed_len));
    int enrolled = post(server, "/v1/delegations", signed_bytes, signed_len) == 201;
    const char *metrics[] = {"thermostat.mode"};
    ConfianceConsentRequest stats = {
        .recipient = "calora", .purpose = "product-improvement",
        .metrics = metrics, .metric_count = 1, .hold = "P90D",
        .valid_from = 0, .valid_until = 0,
    };
    CHECK(confiance_give_consent(thermostat, &stats, now, signed_bytes, sizeof signed_bytes, &signed_len));
    int consented = post(server, "/v1/receipts", signed_bytes, signed_len) == 201;
    CHECK(confiance_require_tokens(thermostat, 1));

    /* A reading; no token yet: it waits in the queue, counted. */
    ConfianceValue heating = {CONFIANCE_VALUE_CATEGORY, 2};
    CHECK(confiance_record(thermostat, "thermostat.mode", "product-improvement", heating, now));
    size_t count = 0;
    CHECK(confiance_flush(thermostat, now, &count));
    ConfianceCounters c;
    CHECK(confiance_counters(thermostat, &c));
    int waited = count == 0 && c.waiting_for_token == 1;

    /* The plan, for a flush every six hours: per scope, its key, a request, the answer. */
    size_t scopes = 0;
    uint32_t asked = 0, added = 0;
    uint8_t scope[256], first_scope[256];
    size_t scope_len = 0, first_scope_len = 0;
    char first_key[65] = "";
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    CHECK(confiance_tokens_to_fetch(thermostat, now, 6 * 3600, &scopes));
    for (size_t i = 0; i < scopes; i++) {
        uint32_t n = 0;
        CHECK(confiance_token_to_fetch(thermostat, i, scope, sizeof scope, &scope_len, &n));
        char query[512], path[600];
        size_t query_len;
        CHECK(confiance_token_key_query(thermostat, scope, scope_len, query, sizeof query, &query_len));
        snprintf(path, sizeof path, "/v1/token-keys?%s", query);
        uint8_t *directory = NULL;
        size_t directory_len = 0;
        if (http(server, path, NULL, 0, &directory, &directory_len) != 200) {
            free(directory);
            continue;
        }
        /* The key as served: 64 hex digits after "public_key":" (a JSON parser in a real host). */
        const char *key = strstr((const char *)directory, "\"public_key\":\"");
        if (!key || strlen(key) < 14 + 64) {
            free(directory);
            continue;
        }
        key += 14;
        if (i == 0) memcpy(first_key, key, 64); /* for a request after the revocation */
        GROWING(buf, cap, len,
                confiance_token_request(thermostat, scope, scope_len, (const uint8_t *)key, 64, n, buf, cap, &len));
        free(directory);
        asked += n;
        uint8_t *answer = NULL;
        size_t answer_len = 0;
        if (http(server, "/v1/tokens", buf, len, &answer, &answer_len) == 200) {
            uint32_t got = 0;
            CHECK(confiance_take_token_response(thermostat, answer, answer_len, &got));
            added += got;
        } else {
            /* Refused (the answer says why, and whether to ask again): plan it again later. */
            CHECK(confiance_forget_token_requests(thermostat, scope, scope_len));
        }
        free(answer);
        if (i == 0) {
            memcpy(first_scope, scope, scope_len);
            first_scope_len = scope_len;
        }
    }
    /* Garbage is refused and adds nothing. */
    uint32_t none = 0;
    ConfianceStatus garbage = confiance_take_token_response(thermostat, (const uint8_t *)"junk", 4, &none);
    uint32_t held_before = 0, held_after = 0;
    if (first_scope_len) CHECK(confiance_tokens_held(thermostat, first_scope, first_scope_len, &held_before));

    /* The reading goes out with a token, and the server keeps it. */
    int accepted = 0;
    ConfianceStatus again = CONFIANCE_STATUS_OK;
    CHECK(confiance_flush(thermostat, now + 1, &count));
    for (size_t i = 0; i < count; i++) {
        GROWING(buf, cap, len, confiance_envelope(thermostat, i, buf, cap, &len));
        uint8_t *answer = NULL;
        size_t answer_len = 0;
        if (http(server, "/v1/envelopes", buf, len, &answer, &answer_len) == 201 &&
            strstr((const char *)answer, "\"refused\":[]")) {
            accepted++;
            CHECK(confiance_acknowledge(thermostat, buf, len));
            /* The upload was retried and answered twice: nothing to do, not a failure. */
            again = confiance_acknowledge(thermostat, buf, len);
        }
        free(answer);
    }
    if (first_scope_len) CHECK(confiance_tokens_held(thermostat, first_scope, first_scope_len, &held_after));

    /* Lost: the subject key revokes the device (here the device's own key, as it is its
     * own subject; an owner's app holds the key that delegated it). Its subject id is
     * what an auditor's GET /v1/subjects/{subject}/access takes. */
    char subject[CONFIANCE_SUBJECT_ID_LEN], subject_of_key[CONFIANCE_SUBJECT_ID_LEN];
    CHECK(confiance_subject_id(thermostat, subject));
    CHECK(confiance_subject_id_of_key(device_key, subject_of_key));
    int same_subject = strlen(subject) == 64 && strcmp(subject, subject_of_key) == 0;
    uint8_t public_key[32];
    CHECK(confiance_public_key(device_key, public_key));
    CHECK(confiance_revoke(device_key, public_key, 0, now + 2, signed_bytes, sizeof signed_bytes, &signed_len));
    int revoked = post(server, "/v1/revocations", signed_bytes, signed_len) == 201;
    int refused_after = 0;
    if (first_scope_len) {
        GROWING(buf, cap, len,
                confiance_token_request(thermostat, first_scope, first_scope_len, (const uint8_t *)first_key, 64, 1,
                                        buf, cap, &len));
        uint8_t *answer = NULL;
        size_t answer_len = 0;
        refused_after = http(server, "/v1/tokens", buf, len, &answer, &answer_len) == 403 && answer &&
                        strstr((const char *)answer, "\"delegation_revoked\"") != NULL;
        free(answer);
    }
    free(buf);
    CHECK(confiance_counters(thermostat, &c));
    CHECK(confiance_recorder_free(thermostat));
    free(fs.bytes);

    printf("{\"enrolled\": %d, \"consented\": %d, \"waited\": %d, \"scopes\": %zu, \"tokens_asked\": %u, "
           "\"tokens_added\": %u, \"garbage_status\": %d, \"held_before\": %u, \"held_after\": %u, "
           "\"envelopes_accepted\": %d, \"acknowledged_again_status\": %d, \"waiting_for_token\": %u, "
           "\"token_failed\": %u, \"subject\": \"%s\", \"revoked\": %d, \"refused_after_revocation\": %d}\n",
           enrolled, consented, waited, scopes, asked, added, garbage, held_before, held_after, accepted, again,
           c.waiting_for_token, c.token_failed, subject, revoked, refused_after);
    int ok = enrolled && consented && waited && scopes >= 1 && asked >= 1 && added == asked &&
             garbage == CONFIANCE_STATUS_BAD_TOKEN_RESPONSE && held_before >= 1 && held_after == held_before - 1 &&
             accepted == 1 && again == CONFIANCE_STATUS_UNKNOWN_ENVELOPE && c.token_failed == 0 && same_subject &&
             revoked && refused_after;
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 4 || (argc > 5 && strcmp(argv[5], "tokens") != 0)) {
        fprintf(stderr, "usage: %s CATALOGUE.bin KEY_CONFIG_HEX STATE_FILE [SERVER_URL [tokens]]\n", argv[0]);
        return 2;
    }
    const char *server = argc > 4 ? argv[4] : NULL;
    size_t catalogue_len;
    uint8_t *catalogue = read_file(argv[1], &catalogue_len);
    uint8_t key_config[256];
    size_t key_config_len = from_hex(argv[2], key_config, sizeof key_config);
    if (argc > 5) {
        int status = with_tokens(catalogue, catalogue_len, key_config, key_config_len, argv[3], server);
        free(catalogue);
        return status;
    }

    /* First boot: the device key and pseudonym secret; a real device keeps them in its
     * secure element and reuses them at every boot. */
    uint8_t device_key[32], pseudonym_secret[32];
    CHECK(confiance_random(device_key, sizeof device_key));
    CHECK(confiance_random(pseudonym_secret, sizeof pseudonym_secret));

    struct file_storage fs = {argv[3], NULL, 0};
    ConfianceStorage storage = {&fs, storage_load, storage_save};
    ConfianceRecorder *thermostat = NULL;
    CHECK(confiance_recorder_new(catalogue, catalogue_len, device_key, pseudonym_secret, "calora",
                                 key_config, key_config_len, storage, CONFIANCE_LIMITS_MICROCONTROLLER,
                                 &thermostat));
    free(catalogue);
    CHECK(confiance_set_strict(thermostat, 1)); /* development build: mistakes are errors */

    /* Two days ago at midnight UTC: the owner agrees in the app. */
    const uint64_t start = (uint64_t)time(NULL) / 86400 * 86400 - 2 * 86400;
    const char *stats_metrics[] = {"thermostat.mode"};
    ConfianceConsentRequest stats = {
        .recipient = "calora", .purpose = "product-improvement",
        .metrics = stats_metrics, .metric_count = 1, .hold = "P90D",
        .valid_from = 0, .valid_until = 0,
    };
    const char *service_metrics[] = {"thermostat.fault-code"};
    ConfianceConsentRequest service = {
        .recipient = "calora", .purpose = "service",
        .metrics = service_metrics, .metric_count = 1, .hold = "P1Y",
        .valid_from = 0, .valid_until = 0,
    };
    uint8_t receipt[2048], service_receipt[2048];
    size_t receipt_len, service_receipt_len;
    CHECK(confiance_give_consent(thermostat, &stats, start, receipt, sizeof receipt, &receipt_len));
    CHECK(confiance_give_consent(thermostat, &service, start, service_receipt, sizeof service_receipt,
                                 &service_receipt_len));
    int receipts_accepted = (post(server, "/v1/receipts", receipt, receipt_len) == 201) +
                            (post(server, "/v1/receipts", service_receipt, service_receipt_len) == 201);

    /* A mistake the strict mode reports: a category index past the last label. */
    ConfianceValue bad = {CONFIANCE_VALUE_CATEGORY, 42};
    ConfianceStatus mistake = confiance_record(thermostat, "thermostat.mode", "product-improvement", bad, start);

    int uploaded = 0, acknowledged = 0;
    uint8_t *frame = NULL;
    size_t frame_cap = 0;
    for (int day = 0; day < 2; day++) {
        for (int hour = 0; hour < 24; hour++) {
            uint64_t now = start + (uint64_t)day * 86400 + (uint64_t)hour * 3600 + 1800;
            ConfianceValue mode = {CONFIANCE_VALUE_CATEGORY, hour < 7 || hour > 21 ? 1 : 2};
            ConfianceStatus s = confiance_record(thermostat, "thermostat.mode", "product-improvement", mode, now);
            /* The catalogue's ε budget (8 a day) stops the rest of the day: expected. */
            if (s != CONFIANCE_STATUS_OK && s != CONFIANCE_STATUS_BUDGET_EXHAUSTED) CHECK(s);
            if (day == 1 && hour == 12) {
                ConfianceValue fault = {CONFIANCE_VALUE_INT, 42};
                CHECK(confiance_record_service(thermostat, "thermostat.fault-code", fault, now));
            }
        }
        /* End of the day: the network is up. */
        uint64_t evening = start + (uint64_t)day * 86400 + 86399;
        size_t count = 0;
        CHECK(confiance_flush(thermostat, evening, &count));
        for (size_t i = 0; i < count; i++) {
            size_t len = 0;
            ConfianceStatus s = confiance_envelope(thermostat, i, frame, frame_cap, &len);
            if (s == CONFIANCE_STATUS_BUFFER_TOO_SMALL) {
                frame = realloc(frame, len);
                frame_cap = len;
                s = confiance_envelope(thermostat, i, frame, frame_cap, &len);
            }
            CHECK(s);
            if (post(server, "/v1/envelopes", frame, len) == 201) {
                uploaded++;
                CHECK(confiance_acknowledge(thermostat, frame, len));
                acknowledged++;
            }
        }
    }
    free(frame);

    /* The owner withdraws the service consent. */
    uint8_t receipt_id[32], withdrawal[2048];
    size_t withdrawal_len;
    CHECK(confiance_receipt_id(service_receipt, service_receipt_len, receipt_id));
    CHECK(confiance_withdraw_consent(thermostat, receipt_id, start + 2 * 86400, withdrawal, sizeof withdrawal,
                                     &withdrawal_len));
    int withdrawals_accepted = post(server, "/v1/withdrawals", withdrawal, withdrawal_len) == 201;

    ConfianceCounters c;
    size_t pending = 0;
    CHECK(confiance_counters(thermostat, &c));
    CHECK(confiance_pending_envelopes(thermostat, &pending));
    CHECK(confiance_recorder_free(thermostat));
    free(fs.bytes);

    /* A freed handle is refused, not used. */
    ConfianceStatus after_free = confiance_set_strict(thermostat, 0);

    printf("{\"receipts_accepted\": %d, \"withdrawals_accepted\": %d, \"envelopes_uploaded\": %d, "
           "\"acknowledged\": %d, \"pending\": %zu, \"recorded\": %u, \"envelopes_sealed\": %u, "
           "\"mistake_status\": %d, \"freed_handle_status\": %d}\n",
           receipts_accepted, withdrawals_accepted, uploaded, acknowledged, pending, c.recorded,
           c.envelopes_sealed, mistake, after_free);
    int ok = c.recorded == 17 /* 8 + 8 mode, 1 fault code */ && mistake == CONFIANCE_STATUS_LABEL_OUT_OF_RANGE &&
             after_free == CONFIANCE_STATUS_BAD_HANDLE &&
             /* Three envelopes: day 1's mode reports, day 1's fault code (a record is sealed
                apart from statistics), day 2's mode reports. */
             (server ? receipts_accepted == 2 && withdrawals_accepted == 1 && pending == 0 && uploaded == 3
                     : pending == 3);
    return ok ? 0 : 1;
}
