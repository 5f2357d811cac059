//! The backtest report in a real browser: headless Chromium renders `report.html` of a sample
//! backtest with no script or console errors, draws both interactive charts and a price chart
//! per traded symbol with its entry and exit markers, and a screenshot of it is a real picture
//! (not blank, not one colour) in which the markers' colours appear. Skipped, with a message,
//! when no Chromium is installed (`apt-get install chromium`; `KINETIC_CHROMIUM` names another
//! binary).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kinetic::backtest::metrics::Metrics;
use kinetic::backtest::report::prices;
use kinetic::backtest::{self, BacktestOptions, report};
use kinetic::config::Settings;

const FROM: i64 = 1_769_904_000_000; // 2026-02-01
const TO: i64 = FROM + 28 * 86_400_000;

fn chromium() -> Option<String> {
    let mut names: Vec<String> = std::env::var("KINETIC_CHROMIUM").into_iter().collect();
    names.extend(["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].map(String::from));
    names.into_iter().find(|n| {
        Command::new(n).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    })
}

/// Runs the browser with a deadline (a hung browser fails the test instead of hanging it).
fn run_browser(bin: &str, args: &[String]) -> Output {
    let mut child = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{bin} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output { status, stdout: t_out.join().unwrap(), stderr: t_err.join().unwrap() }
}

fn sample_report(dir: &Path) -> (PathBuf, Metrics) {
    let settings = Settings::defaults().unwrap();
    let opts = BacktestOptions {
        data_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample"),
        symbols: vec!["BTCUSDT".into(), "ETHUSDT".into(), "SOLUSDT".into()],
        from: Some(FROM),
        to: Some(TO),
    };
    let mut p = backtest::prepare(&settings, &opts).unwrap();
    backtest::run_feed(&mut p.feed, &mut p.engine, &mut |_| {}).unwrap();
    let m = report::write_run(dir, &p.engine, &settings).unwrap();
    assert!(m.trades > 0 && m.benchmark.is_some());
    (dir.join("report.html"), m)
}

/// The inflated image data of a PNG (the IDAT chunks, zlib-decoded, each row still led by its
/// filter byte), with width, height and bytes per pixel (8-bit RGB or RGBA only).
fn png_pixels(png: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut idat, mut size, mut bpp) = (8, Vec::new(), (0, 0), 0);
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let body = &png[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                size = (
                    u32::from_be_bytes(body[..4].try_into().unwrap()),
                    u32::from_be_bytes(body[4..8].try_into().unwrap()),
                );
                assert_eq!(body[8], 8, "not an 8-bit PNG");
                bpp = match body[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("PNG colour type {other} not handled"),
                };
            }
            b"IDAT" => idat.extend_from_slice(body),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    (size.0, size.1, bpp, raw)
}

/// The RGB value of every pixel: the rows of [`png_pixels`] with their filters undone
/// (PNG specification, section 9: None, Sub, Up, Average, Paeth).
fn png_rgb(width: u32, height: u32, bpp: usize, raw: &[u8]) -> Vec<[u8; 3]> {
    let stride = width as usize * bpp;
    let mut prev = vec![0u8; stride];
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for row in raw.chunks(stride + 1).take(height as usize) {
        let (filter, data) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= bpp { i32::from(cur[i - bpp]) } else { 0 };
            let b = i32::from(prev[i]);
            let c = if i >= bpp { i32::from(prev[i - bpp]) } else { 0 };
            let predictor = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            cur[i] = data[i].wrapping_add(predictor as u8);
        }
        out.extend(cur.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    out
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// The value of `attr` on the element whose opening tag contains `marker`.
fn attr<'a>(dom: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let v = &tag[tag.find(&format!("{attr}=\""))? + attr.len() + 2..];
    Some(&v[..v.find('"')?])
}

#[test]
fn report_renders_in_headless_chromium_without_errors() {
    let Some(bin) = chromium() else {
        eprintln!(
            "SKIPPED report_renders_in_headless_chromium_without_errors: no Chromium found \
             (install the `chromium` package or set KINETIC_CHROMIUM)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (html, m) = sample_report(dir.path());
    let traded: Vec<&str> = m.per_symbol.iter().filter(|r| r.trades > 0).map(|r| r.symbol.as_str()).collect();
    assert!(traded.len() >= 2, "the sample should trade several symbols: {traded:?}");
    let url = format!("file://{}", html.display());
    let profile = dir.path().join("profile");

    // 1. The DOM after the scripts ran: both charts drawn, no error caught by the page.
    let out = run_browser(
        &bin,
        &[
            format!("--user-data-dir={}", profile.display()),
            "--enable-logging=stderr".into(),
            "--v=0".into(),
            "--virtual-time-budget=5000".into(),
            "--window-size=1280,900".into(),
            "--dump-dom".into(),
            url.clone(),
        ],
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    let status_at = dom.find("id=\"report-status\"").unwrap_or_else(|| panic!("no status element in the DOM:\n{log}"));
    let status = &dom[status_at..status_at + dom[status_at..].find('>').unwrap()];
    assert!(status.contains("data-errors=\"0\""), "script errors in the page: {status} / {log}");
    let charts = 2 + traded.len();
    assert!(status.contains(&format!("data-charts=\"{charts}\"")), "{charts} charts were not drawn: {status} / {log}");
    assert!(
        status.contains(&format!("data-price-charts=\"{}\"", traded.len())),
        "not one price chart per traded symbol {traded:?}: {status}"
    );
    assert!(dom.matches("class=\"uplot").count() >= charts, "missing uPlot charts in the DOM");
    assert!(dom.matches("<canvas").count() >= charts, "missing chart canvases in the DOM");
    // Each price chart drew at least an entry and an exit per trade of its symbol.
    for (i, symbol) in traded.iter().enumerate() {
        let marks: usize = attr(&dom, &format!("id=\"price-chart-{i}\""), "data-marks")
            .unwrap_or_else(|| panic!("no price chart {i} ({symbol})"))
            .parse()
            .unwrap();
        let trades = m.per_symbol.iter().find(|r| r.symbol == *symbol).unwrap().trades as usize;
        assert!(marks >= 2 * trades, "{symbol}: {marks} markers drawn for {trades} trades");
    }
    for symbol in &traded {
        assert!(dom.contains(&format!("{symbol} close (")), "no legend for {symbol}'s closes");
    }
    for bad in ["Uncaught", "CONSOLE(", "ERR_FILE_NOT_FOUND", "net::ERR"] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(bad)).collect();
        assert!(hits.is_empty(), "browser log has {bad}: {hits:#?}");
    }

    // 2. A screenshot that shows something.
    let shot = dir.path().join("report.png");
    let out = run_browser(
        &bin,
        &[
            format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000".into(),
            "--window-size=1280,2600".into(),
            format!("--screenshot={}", shot.display()),
            url,
        ],
    );
    assert!(out.status.success(), "chromium screenshot failed: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    if let Ok(keep) = std::env::var("KINETIC_REPORT_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    assert!(png.len() > 40_000, "screenshot suspiciously small: {} bytes", png.len());
    let (w, h, bpp, raw) = png_pixels(&png);
    assert_eq!((w, h), (1280, 2600));
    let mut seen = [false; 256];
    for b in &raw {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    assert!(distinct > 32, "screenshot is nearly uniform ({distinct} distinct byte values)");

    // The price charts are in the picture: their marker colours (used nowhere else in the
    // page) fill whole triangles and dots.
    let pixels = png_rgb(w, h, bpp, &raw);
    let count = |hex: &str| pixels.iter().filter(|p| **p == rgb(hex)).count();
    let (long, short, tp) = (count(prices::LONG_COLOUR), count(prices::SHORT_COLOUR), count(prices::TP_COLOUR));
    eprintln!("marker pixels: long {long}, short {short}, take-profit {tp}");
    assert!(long + short > 200, "few entry-marker pixels in the screenshot: long {long}, short {short}");
    assert!(tp > 50, "few take-profit-marker pixels in the screenshot: {tp}");
}
