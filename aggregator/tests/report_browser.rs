//! The HTML report renders in a real browser: Debian's `chromium`, headless, takes a
//! screenshot (which must not be blank) and dumps the DOM (which must hold every chart's
//! SVG with drawing elements in it). Issue 8, "Must show".
//!
//! Needs `chromium` on PATH (or its path in `$CHROMIUM`); `.ci/ensure-chromium` installs it.
//! Set `REPORT_BROWSER_KEEP=1` to keep the HTML, the PNG and the DOM and print where they are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use confiance::Timestamp;
use confiance_aggregator::report::{self, AccessRow, EstimateRow, ReportData, RetentionKind, RetentionRow};

/// A realistic report: the demo (3 recipients, 3 metrics, 5 estimates, an overdue
/// partition) plus an awkward recipient name and a second overdue item.
fn sample() -> ReportData {
    let mut d = ReportData::demo();
    let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    d.access.push(AccessRow {
        recipient: "Bob's <script>alert('x')</script> & Co".into(),
        metric: "indoor_temp".into(),
        subject: "subject 00ff…aa".into(),
        window_start: t("2027-02-10"),
        window_end: Some(t("2027-04-01")),
        hold_secs: 45 * 86_400,
        hold: Some("P45D".into()),
    });
    d.estimates.push(EstimateRow {
        metric: "heating_on".into(),
        label: "boost".into(),
        estimate: 0.0,
        ci95_low: -0.011,
        ci95_high: 0.011,
        std_error: 0.0056,
        true_value: Some(0.0),
        n: 99_871,
    });
    d.retention.push(RetentionRow {
        item: "subject 81d0…7e / research-lab".into(),
        kind: RetentionKind::Records,
        metric: "setpoint".into(),
        records: Some(77),
        collected_from: Some(t("2027-03-01")),
        deadline: t("2027-05-20"),
        hold: Some("P2M".into()),
        purged_at: None,
        overdue_by_secs: Some(12 * 86_400),
    });
    d
}

struct Dir(PathBuf, bool);

impl Drop for Dir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn chromium() -> String {
    let exe = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    match Command::new(&exe).arg("--version").stdout(Stdio::piped()).stderr(Stdio::null()).output() {
        Ok(o) if o.status.success() => exe,
        Ok(o) => panic!("`{exe} --version` failed ({}); run .ci/ensure-chromium (CI installs it)", o.status),
        Err(e) => panic!(
            "headless Chromium is required for this test but `{exe}` could not be run ({e}). \
             Run .ci/ensure-chromium to install Debian's chromium (CI installs it), or set $CHROMIUM."
        ),
    }
}

/// Runs chromium headless with a fresh profile, killing it after a minute and a half.
fn run_chromium(exe: &str, profile: &Path, args: &[String]) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn chromium");
    // Drain both pipes while waiting: a DOM larger than the pipe's buffer (64 KiB) would
    // otherwise block chromium on its write and never let it exit.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Every `<svg …>…</svg>` in `dom`.
fn svgs(dom: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(start) = rest.find("<svg") {
        let tail = &rest[start..];
        let end = tail.find("</svg>").expect("every <svg> is closed") + "</svg>".len();
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let i = tag.find(&key)? + key.len();
    tag[i..].split('"').next()
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let exe = chromium();
    let keep = std::env::var_os("REPORT_BROWSER_KEEP").is_some();
    let dir = std::env::temp_dir().join(format!("confiance-report-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = Dir(dir, keep);
    let data = sample();
    let html_path = dir.0.join("report.html");
    std::fs::write(&html_path, report::render_html(&data)).unwrap();
    let url = format!("file://{}", html_path.display());

    // (1) Screenshot.
    let png_path = dir.0.join("report.png");
    let out = run_chromium(
        &exe,
        &dir.0.join("profile-1"),
        &[format!("--screenshot={}", png_path.display()), "--window-size=1280,4000".into(), url.clone()],
    );
    assert!(
        out.status.success() && png_path.exists(),
        "chromium --screenshot failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut buf).unwrap();
    let channels = frame.color_type.samples();
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    assert_eq!((frame.width, frame.height), (1280, 4000));
    let lum: Vec<f64> = buf[..frame.buffer_size()]
        .chunks_exact(channels)
        .map(|p| {
            if channels >= 3 {
                0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
            } else {
                f64::from(p[0])
            }
        })
        .collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
    let non_white = lum.iter().filter(|l| **l < 200.0).count() as f64 / lum.len() as f64;
    // A blank page has variance 0; text and bars on white give hundreds. The charts alone
    // cover well over 2 % of the page with ink (bars, text, grid).
    println!(
        "screenshot {}x{}: mean luminance {mean:.1}, variance {var:.1}, {:.2}% dark pixels",
        frame.width,
        frame.height,
        non_white * 100.0
    );
    assert!(var > 200.0, "screenshot looks blank: luminance variance {var:.1}");
    assert!(non_white > 0.02, "screenshot has almost no ink: {:.3}% dark pixels", non_white * 100.0);
    // Some pixels carry the chart colours (not only greys): the bars were painted.
    let coloured = buf[..frame.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| channels >= 3 && (i32::from(p[2]) - i32::from(p[0])).abs() > 60)
        .count();
    assert!(coloured > 5_000, "only {coloured} coloured pixels: the charts' bars are missing");

    // (2) DOM.
    let out = run_chromium(&exe, &dir.0.join("profile-2"), &["--dump-dom".into(), url]);
    assert!(out.status.success(), "chromium --dump-dom failed: {}", String::from_utf8_lossy(&out.stderr));
    let dom = String::from_utf8(out.stdout).unwrap();
    std::fs::write(dir.0.join("dom.html"), &dom).unwrap();
    assert!(!dom.contains("<script"), "a recipient name became a script element");
    assert!(
        dom.contains("Bob's &lt;script&gt;alert('x')&lt;/script&gt; &amp; Co"),
        "escaped name not shown as text"
    );

    let recipients = {
        let mut r: Vec<_> = data.access.iter().map(|a| a.recipient.as_str()).collect();
        r.sort_unstable();
        r.dedup();
        r.len()
    };
    let metrics_with_estimates = {
        let mut m: Vec<_> = data.estimates.iter().map(|e| e.metric.as_str()).collect();
        m.sort_unstable();
        m.dedup();
        m.len()
    };
    let mut expected: Vec<String> = (1..=recipients).map(|k| format!("chart-access-{k}")).collect();
    expected.push("chart-budget".into());
    expected.extend((1..=metrics_with_estimates).map(|k| format!("chart-estimates-{k}")));
    expected.push("chart-retention".into());

    // The least each chart must draw beyond its background and legend: one bar per access
    // window or retained item, budget bars per metric, one dot per estimate.
    let mut min_data: Vec<(usize, usize)> = Vec::new(); // (rects, circles), page order
    let mut names: Vec<&str> = data.access.iter().map(|a| a.recipient.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    for r in &names {
        min_data.push((1 + 3 + data.access.iter().filter(|a| a.recipient == *r).count(), 0));
    }
    min_data.push((1 + 4 + data.budgets.len(), 0));
    let mut seen: Vec<&str> = Vec::new();
    for e in &data.estimates {
        if !seen.contains(&e.metric.as_str()) {
            seen.push(&e.metric);
        }
    }
    for m in &seen {
        min_data.push((1, 1 + data.estimates.iter().filter(|e| e.metric == *m).count()));
    }
    min_data.push((1 + 3 + data.retention.iter().filter(|r| r.collected_from.is_some()).count(), 0));

    let found = svgs(&dom);
    let ids: Vec<&str> = found.iter().filter_map(|s| attr(s, "id")).collect();
    assert_eq!(ids, expected, "every chart, once, in page order");
    for (svg, (min_rects, min_circles)) in found.iter().zip(min_data) {
        let id = attr(svg, "id").unwrap();
        let count = |tag: &str| svg.matches(&format!("<{tag} ")).count();
        let (rects, circles, texts) = (count("rect"), count("circle"), count("text"));
        let lines = count("polyline") + count("line") + count("path");
        println!("{id}: {rects} rect, {lines} polyline, {circles} circle, {texts} text");
        assert!(
            svg.contains("<title>") && attr(svg, "aria-label").is_some_and(|l| !l.is_empty()),
            "{id}: no title"
        );
        let w: u32 = attr(svg, "width").unwrap().parse().unwrap();
        let h: u32 = attr(svg, "height").unwrap().parse().unwrap();
        assert!(w >= 600 && h >= 150, "{id}: {w}x{h}");
        // Background rect + legend swatches + data; axes and mesh as polylines; labels as text.
        assert!(
            rects >= min_rects && circles >= min_circles,
            "{id}: data not drawn: {rects} rects (want >= {min_rects}), {circles} circles (want >= {min_circles})"
        );
        assert!(lines >= 2, "{id}: no axes");
        assert!(texts >= 5, "{id}: no labels");
    }

    // (3) The first page: every summary field of every recipient, present and non-empty.
    assert!(!data.summary.is_empty());
    for r in &data.summary {
        let start = dom
            .find(&format!("data-recipient=\"{}\"", r.recipient))
            .unwrap_or_else(|| panic!("no summary card for {}", r.recipient));
        let card = &dom[start..start + dom[start..].find("</div>").unwrap()];
        let fields: Vec<(&str, &str)> = card
            .split("<dd data-field=\"")
            .skip(1)
            .map(|f| {
                let (name, rest) = f.split_once("\">").unwrap();
                (name, rest.split("</dd>").next().unwrap().trim())
            })
            .collect();
        let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "Sees",
                "For",
                "From",
                "Until, at the longest",
                "Holds now",
                "Released and disclosed",
                "Overdue and purged"
            ],
            "{}",
            r.recipient
        );
        for (n, v) in fields {
            assert!(!v.is_empty(), "{}: {n} is empty", r.recipient);
        }
    }
    assert!(
        dom.contains("legal basis: consent") && dom.contains("P6M"),
        "purposes and holds in the catalogue's terms"
    );

    // (4) The summary page alone, as the reader sees it first.
    let summary_png = dir.0.join("summary.png");
    let out = run_chromium(
        &exe,
        &dir.0.join("profile-3"),
        &[
            format!("--screenshot={}", summary_png.display()),
            "--window-size=1100,1400".into(),
            format!("file://{}", html_path.display()),
        ],
    );
    assert!(out.status.success() && summary_png.exists(), "summary screenshot failed");

    // (5) Printed: the print stylesheet keeps the report to a few A4 pages.
    let pages = print_pages(&exe, &dir.0.join("profile-4"), &html_path, &dir.0.join("report.pdf"));
    println!("demo report printed: {pages} A4 pages");
    assert!((2..=12).contains(&pages), "the demo report printed to {pages} pages");
    if keep {
        println!("kept in {}", dir.0.display());
    }
}

/// Pages of a PDF: its `/Type /Page` objects (not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Type /Page")
        .chain(text.match_indices("/Type/Page"))
        .filter(|(i, m)| !text[i + m.len()..].starts_with('s'))
        .count()
}

/// A report the size of the 2 000-device fleet's at its largest: `ReportData::gather`'s
/// caps (400 access cohorts, 400 partitions) plus overdue records, and 8 metrics of 7
/// estimates — the shape `cargo run --example fleet -- --devices 2000 --months 2` prints
/// (docs/reports.md gives its measured page count).
fn fleet_sized() -> ReportData {
    let mut d = ReportData::demo();
    let (a0, r0, e0) = (d.access.clone(), d.retention.clone(), d.estimates.clone());
    d.access = (0..400)
        .map(|i| {
            let mut a = a0[i % a0.len()].clone();
            a.subject = format!("cohort of {} subjects, week {}", 5 + i % 17, i / 8);
            a.window_start = a.window_start.saturating_add_secs((i as u64 % 50) * 3_600);
            a
        })
        .collect();
    d.retention = (0..440)
        .map(|i| {
            let mut r = r0[i % r0.len()].clone();
            r.item = format!("{} bucket {i}", r.metric);
            r.deadline = r.deadline.saturating_add_secs(i as u64 * 3_600);
            r
        })
        .collect();
    d.estimates = (0..8)
        .flat_map(|m| {
            e0.iter().take(7).enumerate().map(move |(k, e)| EstimateRow {
                metric: format!("metric.{m}"),
                label: format!("label {k}"),
                ..e.clone()
            })
        })
        .collect();
    d
}

/// The fleet-sized report prints to a bounded number of A4 pages: charts capped at 40
/// rows, the long tables in the appendix in small print (issue #19 measured 52 pages
/// for the fleet's report before the summary, the appendix and the print stylesheet).
#[test]
fn fleet_sized_report_prints_to_a_bounded_page_count() {
    let exe = chromium();
    let dir = std::env::temp_dir().join(format!("confiance-report-fleet-pdf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = Dir(dir, std::env::var_os("REPORT_BROWSER_KEEP").is_some());
    let html_path = dir.0.join("fleet.html");
    std::fs::write(&html_path, report::render_html(&fleet_sized())).unwrap();
    let pages = print_pages(&exe, &dir.0.join("profile"), &html_path, &dir.0.join("fleet.pdf"));
    println!("fleet-sized report printed: {pages} A4 pages");
    assert!((4..=FLEET_PAGES_MAX).contains(&pages), "the fleet-sized report printed to {pages} pages");
}

/// The real 2 000-device fleet's report — `cargo run --example fleet -- --devices 2000
/// --months 2 --out DIR` writes `DIR/fleet-report.html`, gathered at the run's end with its
/// routine purges and the final purge beside the retention rows — prints to at most
/// [`FLEET_REPORT_PAGES_MAX`] A4 pages. Ignored by `cargo test`, which has no fleet report:
/// `.ci/run` runs it after the fleet example, with `CONFIANCE_FLEET_REPORT` naming the file.
#[test]
#[ignore = "needs the fleet example's report: .ci/run runs it with CONFIANCE_FLEET_REPORT set"]
fn fleet_report_prints_to_a_bounded_page_count() {
    let Some(html_path) = std::env::var_os("CONFIANCE_FLEET_REPORT").map(PathBuf::from) else {
        panic!(
            "set CONFIANCE_FLEET_REPORT to the fleet's fleet-report.html \
             (cargo run --example fleet -- --devices 2000 --months 2 --out DIR)"
        );
    };
    let html_path = html_path
        .canonicalize()
        .unwrap_or_else(|e| panic!("no fleet report at {}: {e}", html_path.display()));
    let html = std::fs::read_to_string(&html_path).unwrap();
    // The report of the run's end: a retention table with rows, purged later.
    assert!(
        html.contains("id=\"appendix-retention\"") && html.contains("<td>partition</td>"),
        "no retention rows"
    );
    let exe = chromium();
    let dir = std::env::temp_dir().join(format!("confiance-report-fleet-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let dir = Dir(dir, std::env::var_os("REPORT_BROWSER_KEEP").is_some());
    let pages = print_pages(&exe, &dir.0.join("profile"), &html_path, &dir.0.join("fleet-report.pdf"));
    println!("the fleet's report printed: {pages} A4 pages");
    assert!(
        (4..=FLEET_REPORT_PAGES_MAX).contains(&pages),
        "the fleet's report printed to {pages} pages (bound {FLEET_REPORT_PAGES_MAX})"
    );
}

/// The bound on the real fleet report's pages: measured 22 (33 before the retention rows
/// fitted one line each and the charts were capped in print; docs/reports.md), with two
/// pages of room for fonts that wrap differently.
const FLEET_REPORT_PAGES_MAX: usize = 24;

/// The bound on the fleet-sized report's pages: measured 19 (24 before the retention rows
/// printed on one line and charts were capped at 125 mm in print, 45 before the
/// appendix's smaller print; docs/reports.md), with room for fonts that wrap differently.
const FLEET_PAGES_MAX: usize = 23;

/// Prints `html` to `pdf` with Chromium (A4, no header or footer) and counts its pages.
fn print_pages(exe: &str, profile: &Path, html: &Path, pdf: &Path) -> usize {
    let out = run_chromium(
        exe,
        profile,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
            format!("file://{}", html.display()),
        ],
    );
    assert!(
        out.status.success() && pdf.exists(),
        "print to PDF failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pdf_pages(&std::fs::read(pdf).unwrap())
}
