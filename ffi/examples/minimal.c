/*
 * The smallest C host of the confiance C ABI (include/confiance.h): it makes a recorder,
 * gives consent, records one value, flushes and frees. It exists to measure what the
 * library adds to a firmware image (ffi/size.sh, docs/benchmarks.md "C library size").
 *
 *   minimal CATALOGUE.bin KEY_CONFIG_HEX
 *
 * CATALOGUE.bin is the catalogue's canonical bytes (`confiance catalogue compile` of
 * examples/catalogue.toml), KEY_CONFIG_HEX the aggregator's key config (`confiance
 * keygen --json`, "key_config"). The state is kept in a static buffer, as firmware would
 * keep it in a flash page. Prints one line and exits 0 if every call succeeded and one
 * envelope was sealed.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "confiance.h"

/* The host's storage: a fixed region, as a flash page would be. */
static uint8_t state[16 * 1024];
static size_t state_len;

static int32_t load(void *context, const uint8_t **bytes, size_t *len) {
    (void)context;
    *bytes = state;
    *len = state_len;
    return 0;
}

static int32_t save(void *context, const uint8_t *bytes, size_t len) {
    (void)context;
    if (len > sizeof state) return 1;
    memcpy(state, bytes, len);
    state_len = len;
    return 0;
}

static size_t from_hex(const char *hex, uint8_t *out, size_t cap) {
    size_t n = 0;
    unsigned int byte;
    while (n < cap && sscanf(hex + 2 * n, "%2x", &byte) == 1) out[n++] = (uint8_t)byte;
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CATALOGUE.bin KEY_CONFIG_HEX\n", argv[0]);
        return 2;
    }
    static uint8_t catalogue[16 * 1024];
    FILE *f = fopen(argv[1], "rb");
    if (!f) return 2;
    size_t catalogue_len = fread(catalogue, 1, sizeof catalogue, f);
    fclose(f);
    uint8_t key_config[128];
    size_t key_config_len = from_hex(argv[2], key_config, sizeof key_config);

    uint8_t device_key[32], pseudonym_secret[32];
    int failed = confiance_random(device_key, sizeof device_key) != CONFIANCE_STATUS_OK;
    failed |= confiance_random(pseudonym_secret, sizeof pseudonym_secret) != CONFIANCE_STATUS_OK;
    ConfianceStorage storage = {NULL, load, save};
    ConfianceRecorder *recorder = NULL;
    failed |= confiance_recorder_new(catalogue, catalogue_len, device_key, pseudonym_secret, "calora",
                                     key_config, key_config_len, storage, CONFIANCE_LIMITS_MICROCONTROLLER,
                                     &recorder) != CONFIANCE_STATUS_OK;
    failed |= confiance_set_strict(recorder, 1) != CONFIANCE_STATUS_OK;

    const uint64_t now = 1800000000; /* 2027-01-15T08:00:00Z */
    const char *metrics[] = {"thermostat.mode"};
    ConfianceConsentRequest request = {
        .recipient = "calora", .purpose = "product-improvement",
        .metrics = metrics, .metric_count = 1, .hold = "P90D",
        .valid_from = 0, .valid_until = 0,
    };
    uint8_t receipt[1024];
    size_t receipt_len = 0, envelopes = 0;
    failed |= confiance_give_consent(recorder, &request, now, receipt, sizeof receipt, &receipt_len) !=
              CONFIANCE_STATUS_OK;
    ConfianceValue comfort = {CONFIANCE_VALUE_CATEGORY, 2};
    failed |= confiance_record(recorder, "thermostat.mode", "product-improvement", comfort, now) !=
              CONFIANCE_STATUS_OK;
    failed |= confiance_flush(recorder, now, &envelopes) != CONFIANCE_STATUS_OK;
    failed |= confiance_recorder_free(recorder) != CONFIANCE_STATUS_OK;

    printf("{\"receipt_bytes\": %zu, \"envelopes\": %zu, \"state_bytes\": %zu}\n", receipt_len, envelopes,
           state_len);
    return failed || envelopes != 1;
}
