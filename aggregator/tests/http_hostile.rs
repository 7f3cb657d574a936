//! `confiance serve` in its own process, limited to 256 file descriptors, under hostile
//! clients on loopback: hundreds of silent connections, slow and oversized headers,
//! slow and stalled bodies, oversized bodies, and requests left unfinished at SIGTERM.
//! Throughout, a well-behaved client (a fresh connection per request, an authenticated
//! query) keeps asking; every one of its requests must be answered, and its success rate
//! and latency percentiles are printed. The server's peak resident memory is read from
//! `/proc` and printed. Then a tiny full filesystem: receipts, withdrawals and envelopes
//! are answered `503 store_failed` with `Retry-After`, never a 4xx, and succeed once
//! space is freed, and nothing acknowledged is lost.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance::consent::{ConsentRequest, Scope};
use confiance::envelope::EnvelopeId;
use confiance::ids::MetricId;
use confiance::recorder::Value as DevValue;
use confiance_aggregator::server::{KeyFile, unhex};
use confiance_aggregator::service::{Aggregator, AggregatorConfig};
use serde_json::Value;
use sha2::Digest as _;

#[path = "support/fixtures.rs"]
mod fixtures;
use fixtures::{catalogue, id, recorder};
#[path = "support/tmpfs.rs"]
mod tmpfs;
use tmpfs::{fill, mount_tmpfs};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confiance"))
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("confiance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cli(d: &Path, db: &Path, args: &[&str]) -> Value {
    let o = bin()
        .arg("--db")
        .arg(db)
        .arg("--keys")
        .arg(d.join("keys"))
        .args(["--catalogue", concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml")])
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_secs(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
}

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `confiance serve` with at most `nofile` open files (`ulimit -n` in a shell
    /// that then execs the server, so the pid is the server's), logging to a file.
    fn start(d: &Path, db: &Path, nofile: u32, args: &[&str]) -> Self {
        let log = d.join(format!("serve-{}.log", args.len()));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_confiance"))
            .arg("--db")
            .arg(db)
            .arg("--keys")
            .arg(d.join("keys"))
            .args(["--catalogue", concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/catalogue.toml")])
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("{line}")).parse().unwrap();
        Self { child, addr, log }
    }

    /// Peak and current resident memory, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    fn sigterm(&self) {
        assert!(
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap().success()
        );
    }

    /// Waits for the process to end, at most `bound`; `None` if it has not.
    fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < bound {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// One request on a fresh connection (`Connection: close`): status, headers and body.
fn request(addr: SocketAddr, raw: &[u8], timeout: Duration) -> std::io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(raw)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    parse_response(&out)
        .ok_or_else(|| std::io::Error::other(format!("bad response {:?}", String::from_utf8_lossy(&out))))
}

fn parse_response(out: &[u8]) -> Option<(u16, String, Vec<u8>)> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head, out[end + 4..].to_vec()))
}

fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, token: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Whether the server closed `s` (EOF or reset after any answer it wrote) before
/// `deadline`; bytes it wrote first (a `408`, a `431`) are returned.
fn closed_by_server(s: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(_) => return Some(got),
        }
    }
}

/// A well-behaved client asking every 50 ms on a fresh connection, until stopped:
/// (answered 200, latency) per request.
fn prober(
    addr: SocketAddr,
    token: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(bool, Duration)>> {
    std::thread::spawn(move || {
        let mut out = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            let r = request(addr, &get("/v1/audit/checkpoint", Some(&token)), Duration::from_secs(20));
            out.push((matches!(r, Ok((200, ..))), t.elapsed()));
            std::thread::sleep(Duration::from_millis(50));
        }
        out
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[test]
fn hostile_clients_do_not_take_the_server_down() {
    let d = tempdir("hostile");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let device = String::from("no-token"); // devices hold no bearer token: they sign what they post
    let auditor = cli(&d, &db, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    let max_body: usize = 1 << 20;
    let mut server = Server::start(
        &d,
        &db,
        256,
        &[
            "--max-body",
            &max_body.to_string(),
            "--header-timeout-ms",
            "1000",
            "--body-timeout-ms",
            "1000",
            "--request-timeout-ms",
            "8000",
            "--max-in-flight",
            "32",
            "--drain-ms",
            "2000",
        ],
    );
    let addr = server.addr;
    let (base_peak, _) = server.memory_kib();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = prober(addr, auditor.clone(), Arc::clone(&stop));
    let bound = Duration::from_secs(20);

    // 1. 300 silent connections: more than the 256 descriptors the server has. Each is
    //    closed by the server (header timeout), those left in the backlog included.
    let mut silent: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let deadline = Instant::now() + bound;
    let cut = silent.iter_mut().map(|s| closed_by_server(s, deadline)).filter(Option::is_some).count();
    assert_eq!(cut, 300, "silent connections the server closed");
    drop(silent);

    // 2. Slow headers: 10 bytes, then one byte every 200 ms; the header timeout counts
    //    from the first byte, so trickling does not keep a connection.
    let mut slow: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for s in &mut slow {
        s.write_all(b"GET /v1/he").unwrap();
    }
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        for s in &mut slow {
            let _ = s.write_all(b"a");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + bound;
    let cut = slow.iter_mut().map(|s| closed_by_server(s, deadline)).filter(Option::is_some).count();
    assert_eq!(cut, 100, "slow-header connections the server closed");
    drop(slow);

    // 3. Oversized unfinished headers (300 KB each, no end): refused at the header
    //    buffer's size (431) instead of held.
    let writers: Vec<_> = (0..100)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                let _ = s.write_all(b"GET /v1/health HTTP/1.1\r\nX-Filler: ");
                let _ = s.write_all(&vec![b'a'; 300_000]);
                closed_by_server(&mut s, Instant::now() + Duration::from_secs(20))
            })
        })
        .collect();
    for w in writers {
        let answer = w.join().unwrap().expect("a connection with oversized headers was not closed");
        if let Some((status, ..)) = parse_response(&answer) {
            assert_eq!(status, 431);
        }
    }

    // 4. Stalled bodies one byte short of the limit, from a client with a device token:
    //    cut by the body timeout with `408 body_timeout`; at most `--max-in-flight` are
    //    read at once, so memory stays bounded.
    let stalled: Vec<_> = (0..150)
        .map(|_| {
            let device = device.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                let head = format!(
                    "POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {device}\r\nContent-Length: {}\r\n\r\n",
                    max_body
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&vec![7u8; max_body - 1]);
                closed_by_server(&mut s, Instant::now() + Duration::from_secs(60))
            })
        })
        .collect();
    let mut timed_out = 0;
    for s in stalled {
        let answer = s.join().unwrap().expect("a stalled body was not cut");
        if let Some((status, head, body)) = parse_response(&answer) {
            assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
            assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
            let v: Value = serde_json::from_slice(&body).unwrap();
            // Cut while streaming, or while waiting for an in-flight slot.
            assert!(v["error"]["code"] == "body_timeout" || v["error"]["code"] == "request_timeout", "{v}");
            timed_out += 1;
        }
    }
    assert!(timed_out > 0);

    // 5. A body larger than the limit is refused from its Content-Length, before a byte of
    //    it is sent; a chunked one is cut at the limit while it streams.
    let (s, head, body) = request(
        addr,
        format!(
            "POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {device}\r\nContent-Length: {}\r\n\r\n",
            max_body + 1
        )
        .as_bytes(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(s, 413);
    // The body was not read, so the connection ends here, and the answer says so: a
    // pooling client would otherwise send its next request on it and lose it.
    assert!(head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"], "body_too_large");
    let mut chunked = format!(
        "POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {device}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..(max_body / 65_536 + 2) {
        chunked.extend_from_slice(b"10000\r\n");
        chunked.extend_from_slice(&[1u8; 65_536]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (s, _, body) = request(addr, &chunked, Duration::from_secs(10)).unwrap();
    assert_eq!(
        (s, serde_json::from_slice::<Value>(&body).unwrap()["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );

    stop.store(true, Ordering::SeqCst);
    let probes = probe.join().unwrap();
    let ok = probes.iter().filter(|(ok, _)| *ok).count();
    let mut lat: Vec<Duration> = probes.iter().map(|(_, l)| *l).collect();
    lat.sort();
    let (peak, rss) = server.memory_kib();
    eprintln!(
        "well-behaved client: {ok}/{} answered 200 ({:.1} %), latency p50 {:?} p99 {:?} max {:?}; server memory: peak {} MiB (at start {} MiB), now {} MiB",
        probes.len(),
        100.0 * ok as f64 / probes.len() as f64,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or_default(),
        peak / 1024,
        base_peak / 1024,
        rss / 1024
    );
    assert_eq!(ok, probes.len(), "every request of the well-behaved client is answered");
    // 32 bodies of 1 MiB in flight at most, 256 connection buffers of 32 KiB: well under
    // 128 MiB. Before the limits, 150 stalled 1 MiB bodies alone held over 150 MiB.
    assert!(peak < 128 * 1024, "peak resident memory {peak} KiB");

    // The request log: one line per request, with route template and code, never a token.
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("route=/v1/envelopes") && log.contains("code=body_timeout"), "{log:.2000}");
    assert!(log.contains("status=413") && log.contains("request_id="), "{log:.2000}");
    assert!(!log.contains(&auditor), "a token in the log");

    // 6. SIGTERM while requests are unfinished: 10 bytes of a request line without a
    //    token, and a body half sent; the server drains and exits 0.
    let mut unfinished = TcpStream::connect(addr).unwrap();
    unfinished.write_all(b"GET /v1/he").unwrap();
    let t = Instant::now();
    server.sigterm();
    let status =
        server.wait_exit(Duration::from_secs(30)).expect("the server did not stop within 30 s of SIGTERM");
    eprintln!(
        "SIGTERM with an unfinished request: exited {status} after {:?} (drain deadline 2 s)",
        t.elapsed()
    );
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&d);
}

/// With long header and body timeouts, only the drain deadline can end requests left
/// unfinished at SIGTERM: the server still exits 0, and an envelope posted just before
/// is acknowledged and kept.
#[test]
fn sigterm_cuts_stalled_clients_at_the_drain_deadline() {
    let d = tempdir("drain");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let device = String::from("no-token"); // devices hold no bearer token: they sign what they post
    let kf = KeyFile::read(&d.join("keys")).unwrap();
    let mut server = Server::start(
        &d,
        &db,
        1024,
        &[
            "--header-timeout-ms",
            "600000",
            "--body-timeout-ms",
            "600000",
            "--request-timeout-ms",
            "3600000",
            "--drain-ms",
            "1000",
        ],
    );
    let addr = server.addr;
    let mut stalled_head = TcpStream::connect(addr).unwrap();
    stalled_head.write_all(b"GET /v1/he").unwrap();
    let mut stalled_body = TcpStream::connect(addr).unwrap();
    stalled_body
        .write_all(format!("POST /v1/envelopes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {device}\r\nContent-Length: 1000\r\n\r\nabc").as_bytes())
        .unwrap();
    // An envelope acknowledged just before the signal.
    let t = now();
    let mut dev = recorder(3, "calora", kf.hpke.iter().map(|(c, _)| *c).collect());
    let given = t.saturating_sub_secs(3_600);
    let receipt = dev
        .give_consent(
            ConsentRequest::new(
                id("calora"),
                id("product-improvement"),
                Scope::metrics([id::<MetricId>("thermostat.mode")]),
                "P90D".parse().unwrap(),
            ),
            given,
        )
        .unwrap();
    assert_eq!(
        request(addr, &post("/v1/receipts", &device, &receipt), Duration::from_secs(10)).unwrap().0,
        201
    );
    let _ = dev.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(1), t);
    let frame = dev.flush(t).remove(0);
    let (s, _, body) =
        request(addr, &post("/v1/envelopes", &device, &frame), Duration::from_secs(10)).unwrap();
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    let acked: Value = serde_json::from_slice(&body).unwrap();

    let t = Instant::now();
    server.sigterm();
    let status =
        server.wait_exit(Duration::from_secs(30)).expect("the server did not stop within 30 s of SIGTERM");
    let took = t.elapsed();
    eprintln!(
        "SIGTERM with a stalled request line and a stalled body: exited {status} after {took:?} (drain deadline 1 s)"
    );
    assert!(status.success());
    assert!(closed_by_server(&mut stalled_head, Instant::now() + Duration::from_secs(1)).is_some());
    assert!(closed_by_server(&mut stalled_body, Instant::now() + Duration::from_secs(1)).is_some());
    let agg =
        Aggregator::open(&db, catalogue(), kf.key_store().unwrap(), AggregatorConfig::default()).unwrap();
    let env = EnvelopeId(unhex(acked["envelope"].as_str().unwrap()).unwrap().try_into().unwrap());
    assert!(agg.has_envelope(&env).unwrap(), "the acknowledged envelope is kept");
    drop(agg);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn full_disk_is_retryable_and_loses_nothing() {
    let d = tempdir("full");
    let fs = d.join("fs");
    let mount = match mount_tmpfs(&fs, "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED full_disk_is_retryable_and_loses_nothing: {why}");
            return;
        }
    };
    let db = fs.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let device = String::from("no-token"); // devices hold no bearer token: they sign what they post
    let kf = KeyFile::read(&d.join("keys")).unwrap();
    let configs: Vec<_> = kf.hpke.iter().map(|(c, _)| *c).collect();
    let server = Server::start(&d, &db, 1024, &[]);
    let addr = server.addr;
    let send = |raw: &[u8]| request(addr, raw, Duration::from_secs(20)).unwrap();
    let t = now();
    let given = t.saturating_sub_secs(3_600);
    let mut next_seed = 100u64;
    let mut device_with_receipt = || {
        next_seed += 1;
        let mut dev = recorder(next_seed, "calora", configs.clone());
        let r = dev
            .give_consent(
                ConsentRequest::new(
                    id("calora"),
                    id("product-improvement"),
                    Scope::metrics([id::<MetricId>("thermostat.mode")]),
                    "P90D".parse().unwrap(),
                ),
                given,
            )
            .unwrap();
        let rid = confiance::consent::SignedReceipt::from_bytes(&r).map(|x| x.id()).ok();
        (dev, r, rid)
    };
    let mut acked_envelopes = Vec::new();
    let mut acked_receipts = Vec::new();
    let (mut first, r, _) = device_with_receipt();
    assert_eq!(send(&post("/v1/receipts", &device, &r)).0, 201);
    acked_receipts.push(r);
    let _ = first.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(1), t);
    let (s, _, b) = send(&post("/v1/envelopes", &device, &first.flush(t).remove(0)));
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    acked_envelopes
        .push(serde_json::from_slice::<Value>(&b).unwrap()["envelope"].as_str().unwrap().to_owned());

    // Fill the disk, then keep giving consent until the store fails: the first failure is
    // a retryable 503 with Retry-After, never a 4xx.
    let filler = fill(&fs);
    let mut failed_receipt = None;
    for _ in 0..2_000 {
        let (dev, r, _) = device_with_receipt();
        let (s, head, b) = send(&post("/v1/receipts", &device, &r));
        if s == 201 {
            acked_receipts.push(r);
            continue;
        }
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!((s, v["error"]["code"].as_str()), (503, Some("store_failed")), "{v}");
        assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
        failed_receipt = Some((dev, r));
        break;
    }
    let (mut dev, receipt) = failed_receipt.expect("a full disk never failed a receipt");
    // An envelope and a withdrawal (of the first device's consent) fail the same way.
    let _ = dev.record(&id("thermostat.mode"), &id("product-improvement"), DevValue::Category(2), t);
    let frame = dev.flush(t);
    let receipt_id = confiance::consent::SignedReceipt::from_bytes(&acked_receipts[0]).unwrap().id();
    let withdrawal = first.withdraw_consent(&receipt_id, t).unwrap();
    let (s, head, b) = send(&post("/v1/withdrawals", &device, &withdrawal));
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    assert!(head.to_ascii_lowercase().contains("retry-after:"));
    for f in &frame {
        let (s, head, b) = send(&post("/v1/envelopes", &device, f));
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!((s, v["error"]["code"].as_str()), (503, Some("store_failed")), "{v}");
        assert!(head.to_ascii_lowercase().contains("retry-after:"));
    }

    // Space freed: the same requests succeed.
    std::fs::remove_file(&filler).unwrap();
    let (s, _, b) = send(&post("/v1/receipts", &device, &receipt));
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
    acked_receipts.push(receipt);
    for f in &frame {
        let (s, _, b) = send(&post("/v1/envelopes", &device, f));
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
        acked_envelopes
            .push(serde_json::from_slice::<Value>(&b).unwrap()["envelope"].as_str().unwrap().to_owned());
    }
    let (s, _, b) = send(&post("/v1/withdrawals", &device, &withdrawal));
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));

    // Nothing acknowledged is lost: after a restart every acknowledged receipt is a
    // duplicate and every acknowledged envelope is held.
    let mut server = server;
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let agg =
        Aggregator::open(&db, catalogue(), kf.key_store().unwrap(), AggregatorConfig::default()).unwrap();
    for a in &acked_envelopes {
        assert!(
            agg.has_envelope(&EnvelopeId(unhex(a).unwrap().try_into().unwrap())).unwrap(),
            "envelope {a} lost"
        );
    }
    drop(agg);
    let server = Server::start(&d, &db, 1024, &[]);
    for r in &acked_receipts {
        let (s, _, b) =
            request(server.addr, &post("/v1/receipts", &device, r), Duration::from_secs(20)).unwrap();
        assert_eq!(s, 409, "an acknowledged receipt was lost: {}", String::from_utf8_lossy(&b));
    }
    let (s, _, _) =
        request(server.addr, &post("/v1/withdrawals", &device, &withdrawal), Duration::from_secs(20))
            .unwrap();
    assert_eq!(s, 409, "the acknowledged withdrawal was lost");
    drop(server);
    drop(mount);
    let _ = std::fs::remove_dir_all(&d);
}

/// Errors of the transport itself: every one in the JSON shape, authentication first,
/// the `Bearer` scheme in any case, RFC 3339 times with offsets; the probes, the key
/// configs and the metrics.
#[test]
fn transport_answers() {
    let d = tempdir("transport");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let auditor = cli(&d, &db, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    let admin = cli(&d, &db, &["token", "--role", "admin"])["token"].as_str().unwrap().to_owned();
    let kf = KeyFile::read(&d.join("keys")).unwrap();
    let server = Server::start(&d, &db, 1024, &[]);
    let ask = |raw: Vec<u8>| {
        let (s, head, body) = request(server.addr, &raw, Duration::from_secs(10)).unwrap();
        let v: Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{s} not JSON ({e}): {head}\n{}", String::from_utf8_lossy(&body)));
        (s, v["error"]["code"].as_str().map(str::to_owned), v)
    };
    let code = |s: u16, c: &str| (s, Some(c.to_owned()));
    // A path parameter that is not UTF-8: 401 without a token (authentication first),
    // a JSON 400 with one.
    // Every route with a path parameter, the admin's override included.
    for (method, bad_path) in [
        ("GET", "/v1/subjects/%FF%FE/access"),
        ("GET", "/v1/subjects/%FF%FE/report"),
        ("POST", "/v1/subjects/%FF%FE/override"),
        ("GET", "/v1/recipients/%FF%FE/view"),
        ("GET", "/v1/metrics/%FF%FE/who-sees"),
        ("GET", "/v1/categories/%FF%FE/who-sees"),
    ] {
        let ask_as = |token: Option<&str>| {
            let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
            let body = r#"{"reason": "lost key"}"#;
            ask(format!(
                "{method} {bad_path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .into_bytes())
        };
        let (s, c, _) = ask_as(None);
        assert_eq!((s, c), code(401, "missing_credentials"), "{method} {bad_path}");
        let (s, c, _) = ask_as(Some(&admin));
        assert_eq!((s, c), code(400, "bad_path"), "{method} {bad_path}");
    }
    // The client's request id is echoed and logged when it is a plain token; one that
    // could forge fields of the log line (or bloat it) is replaced by a fresh UUID.
    let with_id = |rid: &str| {
        let raw =
            format!("GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Request-Id: {rid}\r\nConnection: close\r\n\r\n");
        let (s, head, _) = request(server.addr, raw.as_bytes(), Duration::from_secs(10)).unwrap();
        assert_eq!(s, 200);
        head.lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("x-request-id: ").map(str::to_owned))
            .unwrap()
    };
    assert_eq!(with_id("job-42.retry_1"), "job-42.retry_1");
    let forged = "a}: answered status=201 latency_us=1 code=- FORGED";
    let long = "A".repeat(65);
    for rid in [forged, &long] {
        let echoed = with_id(rid);
        assert!(echoed.len() == 36 && echoed.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{echoed}");
    }
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("request_id=job-42.retry_1") && !log.contains("FORGED") && !log.contains(&long));
    // A malformed query string, an unknown route, a wrong method: JSON too.
    let (s, c, _) = ask(get("/v1/overdue?now=%ZZ", Some(&auditor)));
    assert_eq!(s, 400, "{c:?}");
    assert!(c.is_some());
    assert_eq!(ask(get("/nowhere", None)).1, Some("not_found".into()));
    // `bearer` in lower case, and times with offsets.
    let lower = format!(
        "GET /v1/overdue HTTP/1.1\r\nHost: x\r\nAuthorization: bearer {auditor}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(ask(lower.into_bytes()).0, 200);
    let (s, _, a) = ask(get("/v1/categories/usage/who-sees?at=2027-01-31T14:00:00%2B02:00", Some(&auditor)));
    let (s2, _, b) = ask(get("/v1/categories/usage/who-sees?at=2027-01-31T12:00:00Z", Some(&auditor)));
    assert_eq!((s, s2, &a["at"]), (200, 200, &b["at"]), "{a}");
    let (s, _, a) = ask(get("/v1/categories/usage/who-sees?at=2027-01-31T10:00:00-02:00", Some(&auditor)));
    assert_eq!((s, &a["at"]), (200, &b["at"]));
    // Probes and key configs, without a token.
    assert_eq!(ask(get("/v1/ready", None)).2["status"], "ready");
    let (s, _, keys) = ask(get("/v1/keys", None));
    assert_eq!(s, 200);
    let published = &keys["keys"][0];
    assert_eq!(
        (published["state"].as_str(), published["id"].as_u64()),
        (Some("current"), Some(u64::from(kf.hpke[0].0.id.0)))
    );
    assert_eq!(published["config"].as_str().map(unhex), Some(Some(kf.hpke[0].0.to_bytes().to_vec())));
    // The catalogue a device seals under, without a token: its digest is SHA-256 of the
    // domain and the canonical bytes shown (docs/wire-format.md §8).
    let (s, _, cat) = ask(get("/v1/catalogue", None));
    assert_eq!(s, 200, "{cat}");
    let served = catalogue();
    let canonical = cat["canonical"].as_str().and_then(unhex).unwrap();
    assert_eq!(canonical, served.canonical_bytes());
    let digest = sha2::Sha256::digest([b"confiance/catalogue/v1\0".as_slice(), &canonical].concat());
    assert_eq!(cat["digest"].as_str().and_then(unhex), Some(digest.to_vec()));
    assert_eq!(cat["digest"].as_str().and_then(unhex), Some(served.digest().as_bytes().to_vec()));
    assert_eq!(cat["version"].as_u64(), Some(u64::from(served.version())));
    // Every anonymous metric's mechanism, `auto` resolved, with every parameter: put
    // back into the library's own `Params` (the key is per period, so 0), it is exactly
    // the catalogue's selection — no field lost, none invented.
    let mechanisms = cat["mechanisms"].as_object().unwrap();
    let anonymous: Vec<_> = served.metrics().filter(|(_, m)| m.mechanism().is_some()).collect();
    assert_eq!(mechanisms.len(), anonymous.len(), "{cat}");
    for (id, metric) in anonymous {
        let selection = metric.mechanism().unwrap();
        let entry = &mechanisms[&id.to_string()];
        assert_eq!(entry["mechanism"].as_str(), Some(selection.name().to_string().as_str()), "{id}");
        assert_eq!(entry["epsilon"]["num"].as_u64(), Some(u64::from(selection.epsilon().numerator())));
        assert_eq!(entry["epsilon"]["den"].as_u64(), Some(u64::from(selection.epsilon().denominator())));
        let variant = format!("{:?}", selection.params());
        let variant = variant.split([' ', '{']).next().unwrap();
        let mut fields = entry.as_object().unwrap().clone();
        for k in ["mechanism", "epsilon", "keyed"] {
            fields.remove(k);
        }
        let keyed = entry["keyed"].as_bool().unwrap();
        if keyed {
            fields.insert(if variant == "Olh" { "pool_key" } else { "key" }.into(), 0.into());
        }
        let params: confiance::ldp::Params =
            serde_json::from_value(serde_json::json!({ variant: fields })).unwrap();
        assert_eq!(&params, selection.params(), "{id}: {entry}");
        assert_eq!(keyed, selection.for_period(id.as_str(), 0).key().is_some(), "{id}");
    }
    // Metrics: admin only, Prometheus text.
    assert_eq!(ask(get("/metrics", Some(&auditor))).1, Some("wrong_role".into()));
    let (s, head, body) =
        request(server.addr, &get("/metrics", Some(&admin)), Duration::from_secs(10)).unwrap();
    let text = String::from_utf8(body).unwrap();
    assert_eq!(s, 200, "{text}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain; version=0.0.4"), "{head}");
    for name in [
        "confiance_envelopes_accepted_total 0",
        "confiance_commit_seconds_count",
        "confiance_commit_queue_depth 0",
        "confiance_audit_log_events",
        "confiance_http_responses_total{status=\"401\"}",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&d);
}

/// A server killed while it gathers a report (`SIGKILL`, the OOM killer) leaves its
/// snapshot next to the database: a full copy of it, records and period keys included,
/// that no purge reaches — found by killing one during `GET /v1/report` on a 14 MB
/// database. The next start removes exactly those files; the server's own snapshots go
/// with their report.
#[test]
fn serve_removes_the_report_snapshots_a_killed_server_left() {
    let d = tempdir("stale-snapshot");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let auditor = cli(&d, &db, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    cli(&d, &db, &["simulate", "--devices", "20", "--days", "2"]);
    // What the killed server left: the copy, named as its snapshots are, and SQLite's files.
    let stale: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|s| d.join(format!(".db.sqlite.snapshot-0123456789abcdef.sqlite{s}")))
        .collect();
    std::fs::copy(&db, &stale[0]).unwrap();
    for p in &stale[1..] {
        std::fs::write(p, [0u8; 64]).unwrap();
    }
    // Files that only look alike are not the server's to remove.
    let kept: Vec<PathBuf> = [
        ".db.sqlite.snapshot-notes.sqlite",
        ".db.sqlite.snapshot-0123456789abcdef.sqlite.bak",
        ".other.sqlite.snapshot-0123456789abcdef.sqlite",
        "db.sqlite.snapshot-0123456789abcdef.sqlite",
    ]
    .iter()
    .map(|n| d.join(n))
    .collect();
    for p in &kept {
        std::fs::write(p, b"keep").unwrap();
    }
    let server = Server::start(&d, &db, 1024, &[]);
    for p in &stale {
        assert!(!p.exists(), "{} is still there after the start", p.display());
    }
    for p in &kept {
        assert!(p.exists(), "{} was removed", p.display());
    }
    let (s, _, body) =
        request(server.addr, &get("/v1/report?format=json", Some(&auditor)), Duration::from_secs(60))
            .unwrap();
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let snapshots: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".db.sqlite.snapshot-") && !kept.iter().any(|k| k.ends_with(n)))
        .collect();
    assert!(snapshots.is_empty(), "the report's own snapshot was left: {snapshots:?}");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(log.contains("removed a report snapshot"), "{log:.2000}");
    drop(server);
    let _ = std::fs::remove_dir_all(&d);
}

/// Each `GET /v1/report` copies the whole database next to it and loads the copy: eight
/// asked at once by one auditor token made eight copies at once (measured on a 14 MB
/// database), so a dashboard refreshing reports could fill the disk — and fail every
/// device's ingest with `503` — or the memory. Reports are gathered one at a time: the
/// others wait their turn, and every one is answered.
#[test]
fn concurrent_reports_make_one_snapshot_at_a_time() {
    let d = tempdir("report-queue");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let auditor = cli(&d, &db, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    cli(&d, &db, &["simulate", "--devices", "150", "--days", "3"]);
    let server = Server::start(&d, &db, 1024, &["--request-timeout-ms", "120000"]);
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (d, stop) = (d.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            use std::os::unix::fs::PermissionsExt as _;
            let (mut most, mut modes) = (0, std::collections::BTreeSet::new());
            while !stop.load(Ordering::SeqCst) {
                let copies: Vec<_> = std::fs::read_dir(&d)
                    .unwrap()
                    .filter_map(|e| e.ok())
                    .filter(|e| {
                        let n = e.file_name().into_string().unwrap_or_default();
                        n.starts_with(".db.sqlite.snapshot-") && n.ends_with(".sqlite")
                    })
                    .collect();
                modes.extend(
                    copies.iter().filter_map(|e| Some(e.metadata().ok()?.permissions().mode() & 0o777)),
                );
                most = most.max(copies.len());
                std::thread::sleep(Duration::from_millis(1));
            }
            (most, modes)
        })
    };
    let askers: Vec<_> = (0..8)
        .map(|_| {
            let auditor = auditor.clone();
            std::thread::spawn(move || {
                request(addr, &get("/v1/report?format=json", Some(&auditor)), Duration::from_secs(120))
                    .unwrap()
                    .0
            })
        })
        .collect();
    let statuses: Vec<u16> = askers.into_iter().map(|a| a.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    let (most, modes) = watcher.join().unwrap();
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(most, 1, "snapshots of the database at once");
    // A copy of the database is as private as the database.
    assert_eq!(modes.into_iter().collect::<Vec<_>>(), vec![0o600], "the snapshots' modes");
    drop(server);
    let _ = std::fs::remove_dir_all(&d);
}

/// An answer given before the request's body was read (a wrong role, a missing token, a
/// bad path: checked first, docs/http.md) ends the connection — hyper cannot read the
/// next request past an unread body — so it must say `Connection: close` (RFC 9112
/// §9.6): it did not, and a pooling client sent its next request on the closed
/// connection and lost it ("Peer disconnected", seen in http_server.rs's run). A body
/// read to its end keeps the connection for the next request.
#[test]
fn an_answer_before_the_body_is_read_closes_the_connection_and_says_so() {
    let d = tempdir("unread-body");
    let db = d.join("db.sqlite");
    cli(&d, &db, &["keygen"]);
    let auditor = cli(&d, &db, &["token", "--role", "auditor"])["token"].as_str().unwrap().to_owned();
    cli(&d, &db, &["simulate", "--devices", "5", "--days", "1"]);
    let calora = cli(&d, &db, &["token", "--role", "recipient", "--recipient", "calora"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Server::start(&d, &db, 1024, &[]);
    let body = include_bytes!("../../examples/catalogue.toml");
    // The head first, the body a little later, as a client streaming a body sends it.
    let first = |path: &str, token: Option<&str>| {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        s.write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n", body.len())
                .as_bytes(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let _ = s.write_all(body);
        let mut buf = vec![0u8; 65_536];
        let n = s.read(&mut buf).unwrap();
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        (head, s)
    };
    for (path, token, status) in [
        ("/v1/catalogue-diff", Some(calora.as_str()), "403"),
        ("/v1/releases", None, "401"),
        ("/v1/subjects/%FF/override", Some(auditor.as_str()), "403"),
    ] {
        let (head, _) = first(path, token);
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{path}: {head}");
        assert!(
            head.contains("connection: close"),
            "{path}: an unread body, and no `Connection: close`: {head}"
        );
    }
    // The body read: the connection carries a second request.
    let (head, mut s) = first("/v1/catalogue-diff", Some(&auditor));
    assert!(head.starts_with("http/1.1 200") && !head.contains("connection: close"), "{head}");
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(server);
    let _ = std::fs::remove_dir_all(&d);
}
