"""Fixtures of the binding's tests: real `confiance serve`s started by .ci/uniffi.

CONFIANCE_URL is the server (serving examples/catalogue.toml), CONFIANCE_ADMIN_TOKEN an
admin token for its queries; CONFIANCE_TOKEN_URL a second one, started with
`--token-secret` (report tokens required). The catalogue and key config come from each
server itself.
"""

import datetime
import json
import os
import urllib.error
import urllib.request

import pytest

import confiance


class MemoryStorage(confiance.HostStorage):
    """State kept in memory; `saves` counts the saves."""

    def __init__(self):
        self.data = None
        self.saves = 0

    def load(self):
        return self.data

    def save(self, data):
        self.data = bytes(data)
        self.saves += 1


class Server:
    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method, path, body=None, content_type="application/octet-stream", auth=False):
        """Returns (HTTP status, JSON answer)."""
        headers = {"content-type": content_type}
        if auth:
            headers["authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def post(self, path, data):
        return self.request("POST", path, bytes(data))

    def post_raw(self, path, data):
        """Returns (HTTP status, the answer's bytes): `POST /v1/tokens` answers postcard."""
        req = urllib.request.Request(
            self.url + path, data=bytes(data), method="POST", headers={"content-type": "application/octet-stream"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get(self, path, auth=False):
        status, answer = self.request("GET", path, auth=auth)
        assert status == 200, (path, status, answer)
        return answer


@pytest.fixture(scope="session")
def server():
    url = os.environ.get("CONFIANCE_URL")
    if not url:
        pytest.fail("CONFIANCE_URL is not set: run the suite through .ci/uniffi")
    return Server(url, os.environ.get("CONFIANCE_ADMIN_TOKEN", ""))


@pytest.fixture(scope="session")
def token_server():
    url = os.environ.get("CONFIANCE_TOKEN_URL")
    if not url:
        pytest.fail("CONFIANCE_TOKEN_URL is not set: run the suite through .ci/uniffi")
    return Server(url, "")


@pytest.fixture(scope="session")
def catalogue(server):
    return bytes.fromhex(server.get("/v1/catalogue")["canonical"])


@pytest.fixture(scope="session")
def key_config(server):
    return bytes.fromhex(server.get("/v1/keys")["keys"][0]["config"])


def recorders(server):
    """Makes new devices for `server`: fresh secrets, its catalogue and key, phone limits,
    in-memory storage."""
    catalogue = bytes.fromhex(server.get("/v1/catalogue")["canonical"])
    key_config = bytes.fromhex(server.get("/v1/keys")["keys"][0]["config"])

    def make(storage=None, strict=True, limits=confiance.LimitsPreset.PHONE, secrets=None, delegation=None):
        """`delegation`: the owner's delegation of `secrets`' device key (`Recorder.delegated`)."""
        device_key, pseudonym_secret = secrets or (confiance.random_secret(), confiance.random_secret())
        if delegation is None:
            r = confiance.Recorder(
                catalogue, device_key, pseudonym_secret, "calora", key_config, limits, storage or MemoryStorage()
            )
        else:
            r = confiance.Recorder.delegated(
                catalogue, device_key, pseudonym_secret, delegation, "calora", key_config, limits,
                storage or MemoryStorage(),
            )
        r.set_strict(strict)
        return r

    return make


@pytest.fixture
def make_recorder(server):
    """A new device of the server without tokens."""
    return recorders(server)


@pytest.fixture
def make_token_recorder(token_server):
    """A new device of the server that requires report tokens."""
    return recorders(token_server)


@pytest.fixture
def start():
    """Midnight UTC, four days ago: the device's first day."""
    today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - datetime.timedelta(days=4)
