//! Streams the candles of one series out of its files (plain, gzip or zip), row by row, in
//! time order, and keeps a record of what the data looked like: the range covered, gaps
//! (missing candles) and duplicate rows, each with its time, for the user to see.
//!
//! Rows are Binance's kline-dump columns (11, or 12 with the trailing `ignore`), with or
//! without a header line; timestamps in milliseconds (microseconds, as Binance's newer spot
//! dumps use, are recognised and converted). A row earlier than the one before it is an error;
//! a repeated open time is skipped and recorded.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use flate2::read::MultiGzDecoder;

use super::files::SeriesFiles;
use super::{DataError, parse_row};
use crate::core::models::{Candle, Timeframe, TimestampMs};

/// Counts the bytes read from disk, for a progress bar.
struct CountingReader<R> {
    inner: R,
    counter: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.set(self.counter.get() + n as u64);
        Ok(n)
    }
}

/// Opens a data file as lines: gzip for `.gz`, the single entry of a `.zip`, else plain text.
/// The bytes read from disk are added to `counter`.
///
/// # Errors
/// The file cannot be opened, or is not a readable zip.
pub fn open_file(path: &Path, counter: Rc<Cell<u64>>) -> Result<Box<dyn BufRead>, DataError> {
    let file = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let ext = path.extension().map(|e| e.to_ascii_lowercase());
    let reader: Box<dyn Read> = match ext.as_ref().and_then(|e| e.to_str()) {
        Some("gz") => {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, CountingReader { inner: file, counter })))
        }
        Some("zip") => super::zip::open_entry(file, path, |f| CountingReader { inner: f, counter })?,
        _ => Box::new(CountingReader { inner: file, counter }),
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// What one series' files held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuality {
    pub symbol: String,
    pub timeframe: Timeframe,
    /// Open time of the first candle read.
    pub first_open: Option<TimestampMs>,
    /// Close time of the last candle read.
    pub last_close: Option<TimestampMs>,
    /// Candles read (duplicates not counted).
    pub candles: u64,
    /// Missing stretches: (open time of the first missing candle, open time of the next candle
    /// present).
    pub gaps: Vec<(TimestampMs, TimestampMs)>,
    /// Open times of rows skipped as repeats of the row before.
    pub duplicates: Vec<TimestampMs>,
}

impl SeriesQuality {
    fn new(symbol: &str, timeframe: Timeframe) -> Self {
        SeriesQuality {
            symbol: symbol.to_string(),
            timeframe,
            first_open: None,
            last_close: None,
            candles: 0,
            gaps: Vec::new(),
            duplicates: Vec::new(),
        }
    }
}

/// What one line of a file held.
pub(super) enum Line {
    /// A blank line or the header.
    Nothing,
    Candle(Candle),
    /// A row opening before the reader's `skip_before`: only its open time was read.
    Early(TimestampMs),
}

/// Parses the lines of one file: an optional header, then rows.
pub(super) struct LineParser {
    path: PathBuf,
    line_no: usize,
    seen_row_or_header: bool,
}

/// The first columns every accepted header starts with.
const HEADER_START: [&str; 6] = ["open_time", "open", "high", "low", "close", "volume"];

impl LineParser {
    pub(super) fn new(path: &Path) -> Self {
        LineParser { path: path.to_path_buf(), line_no: 0, seen_row_or_header: false }
    }

    pub(super) fn malformed(&self, reason: String) -> DataError {
        DataError::Malformed { path: self.path.clone(), line: self.line_no, reason }
    }

    /// The candle on this line, `None` for a blank line or the header.
    pub(super) fn parse(&mut self, raw: &str) -> Result<Option<Candle>, DataError> {
        match self.parse_from(raw, TimestampMs::MIN)? {
            Line::Candle(c) => Ok(Some(c)),
            Line::Nothing | Line::Early(_) => Ok(None),
        }
    }

    /// As [`LineParser::parse`], except that a row whose open time is before `skip_before`
    /// has only that column read (and checked): the replay drops it anyway, and the 1h file
    /// of a symbol often holds years before a backtest's window.
    pub(super) fn parse_from(&mut self, raw: &str, skip_before: TimestampMs) -> Result<Line, DataError> {
        self.line_no += 1;
        let text = raw.trim_end_matches(['\n', '\r']);
        let text = if self.line_no == 1 { text.trim_start_matches('\u{feff}') } else { text };
        if text.trim().is_empty() {
            return Ok(Line::Nothing);
        }
        let first = !self.seen_row_or_header;
        self.seen_row_or_header = true;
        if first && !text.starts_with(|c: char| c.is_ascii_digit()) {
            let names: Vec<String> = text.split(',').map(|s| s.trim().to_ascii_lowercase()).collect();
            if names.iter().zip(HEADER_START).all(|(n, h)| n == h) && names.len() >= HEADER_START.len() {
                return Ok(Line::Nothing);
            }
            return Err(self.malformed(format!(
                "expected a header starting `{}` or a kline row; got `{text}`",
                HEADER_START.join(",")
            )));
        }
        if skip_before > TimestampMs::MIN
            && let Some(open_time) = leading_open_time(text)
            && open_time < skip_before
        {
            return Ok(Line::Early(open_time));
        }
        parse_row(text).map(Line::Candle).map_err(|reason| self.malformed(reason))
    }
}

/// The open time in the first column of a row (ms; µs converted as [`parse_row`] does), if it
/// is a plain integer followed by a comma.
fn leading_open_time(text: &str) -> Option<TimestampMs> {
    let (first, _) = text.split_once(',')?;
    let t = first.parse::<i64>().ok()?;
    Some(if t >= super::MICROS_THRESHOLD { t / 1000 } else { t })
}

/// The candles of one series, file after file, in time order.
pub struct SeriesReader {
    files: std::vec::IntoIter<PathBuf>,
    counter: Rc<Cell<u64>>,
    current: Option<(Box<dyn BufRead>, LineParser)>,
    line: String,
    step_ms: i64,
    last_open: Option<TimestampMs>,
    quality: Rc<RefCell<SeriesQuality>>,
    /// Rows opening before this are passed over (see [`SeriesReader::skip_before`]).
    skip_before: Arc<AtomicI64>,
}

impl SeriesReader {
    /// A reader over `series`, counting bytes read into `counter`.
    pub fn new(series: &SeriesFiles, counter: Rc<Cell<u64>>) -> Self {
        SeriesReader {
            files: series.files.clone().into_iter(),
            counter,
            current: None,
            line: String::with_capacity(160),
            step_ms: series.timeframe.duration_ms(),
            last_open: None,
            quality: Rc::new(RefCell::new(SeriesQuality::new(&series.symbol, series.timeframe))),
            skip_before: Arc::new(AtomicI64::new(TimestampMs::MIN)),
        }
    }

    /// From now on, rows opening before `from` are passed over: only their open time is read,
    /// for the order check and the quality record's gaps and repeats (which still cover the
    /// whole file), and they are neither handed out nor counted in its range.
    pub fn skip_before(&self, from: TimestampMs) {
        self.skip_before.store(from, Ordering::Relaxed);
    }

    /// What was read so far; complete once [`SeriesReader::next_candle`] returned `None`.
    pub fn quality(&self) -> Rc<RefCell<SeriesQuality>> {
        Rc::clone(&self.quality)
    }

    /// The next candle, `None` after the last file.
    ///
    /// # Errors
    /// I/O errors, malformed rows and rows out of time order, with file and line.
    pub fn next_candle(&mut self) -> Result<Option<Candle>, DataError> {
        loop {
            let Some((reader, parser)) = self.current.as_mut() else {
                let Some(path) = self.files.next() else { return Ok(None) };
                self.current = Some((open_file(&path, Rc::clone(&self.counter))?, LineParser::new(&path)));
                continue;
            };
            self.line.clear();
            let n = reader
                .read_line(&mut self.line)
                .map_err(|source| DataError::Io { path: parser.path.clone(), source })?;
            if n == 0 {
                self.current = None;
                continue;
            }
            let (open_time, candle) = match parser.parse_from(&self.line, self.skip_before.load(Ordering::Relaxed))? {
                Line::Nothing => continue,
                Line::Early(t) => (t, None),
                Line::Candle(c) => (c.open_time, Some(c)),
            };
            if let Some(prev) = self.last_open {
                if open_time == prev {
                    self.quality.borrow_mut().duplicates.push(open_time);
                    continue;
                }
                if open_time < prev {
                    return Err(parser.malformed(format!(
                        "open_time {open_time} is before the previous row's {prev} (rows must be in time order)"
                    )));
                }
                if open_time > prev + self.step_ms {
                    self.quality.borrow_mut().gaps.push((prev + self.step_ms, open_time));
                }
            }
            self.last_open = Some(open_time);
            let Some(candle) = candle else { continue };
            let mut q = self.quality.borrow_mut();
            q.first_open.get_or_insert(candle.open_time);
            q.last_close = Some(candle.close_time);
            q.candles += 1;
            return Ok(Some(candle));
        }
    }
}

/// Reads a whole series into memory.
///
/// # Errors
/// As [`SeriesReader::next_candle`].
pub fn read_series(series: &SeriesFiles) -> Result<(Vec<Candle>, SeriesQuality), DataError> {
    let mut reader = SeriesReader::new(series, Rc::new(Cell::new(0)));
    let mut out = Vec::new();
    while let Some(c) = reader.next_candle()? {
        out.push(c);
    }
    let quality = reader.quality().borrow().clone();
    Ok((out, quality))
}

/// Rows handed over from the reading thread per batch (a few pages of candles: the thread stays
/// ahead of the replay while memory stays a few hundred kB per series).
const PREFETCH_BATCH: usize = 512;
/// Batches in flight per series.
const PREFETCH_BATCHES: usize = 2;

/// One step of a series as [`SeriesReader`] saw it on the reading thread, in file order.
enum Ahead {
    Candle(Candle),
    /// A repeated row skipped on the way to the next candle.
    Duplicate(TimestampMs),
    /// Missing candles found on the way to the next candle.
    Gap(TimestampMs, TimestampMs),
    End,
    Failed(DataError),
}

/// A series read by a [`SeriesReader`] on its own thread, a few batches ahead of the caller, so
/// decompressing and parsing the files overlap the replay on another core. What the caller sees
/// is exactly what the [`SeriesReader`] would have given it: the same candles, an error at the
/// same row, and the quality record (gaps, duplicates, range) up to the candle last handed out,
/// never the rows read ahead. The bytes counter moves a batch at a time.
pub struct PrefetchReader {
    rx: std::sync::mpsc::Receiver<(Vec<Ahead>, u64)>,
    batch: std::vec::IntoIter<Ahead>,
    counter: Rc<Cell<u64>>,
    quality: Rc<RefCell<SeriesQuality>>,
    /// The series' first file, to name a reading thread that stopped without a word.
    origin: PathBuf,
    finished: bool,
    /// The reading thread's [`SeriesReader::skip_before`].
    skip_before: Arc<AtomicI64>,
}

impl PrefetchReader {
    /// Starts the reading thread; `None` when no thread can be started (the caller then reads
    /// the series in place).
    pub fn spawn(series: &SeriesFiles, counter: Rc<Cell<u64>>) -> Option<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(PREFETCH_BATCHES);
        let skip_before = Arc::new(AtomicI64::new(TimestampMs::MIN));
        let shared = Arc::clone(&skip_before);
        let owned = series.clone();
        let started = std::thread::Builder::new()
            .name(format!("read {} {}", series.symbol, series.timeframe))
            .spawn(move || read_ahead(&owned, shared, &tx));
        if started.is_err() {
            return None;
        }
        Some(PrefetchReader {
            rx,
            batch: Vec::new().into_iter(),
            counter,
            quality: Rc::new(RefCell::new(SeriesQuality::new(&series.symbol, series.timeframe))),
            origin: series.files.first().cloned().unwrap_or_default(),
            finished: false,
            skip_before,
        })
    }

    /// The reading thread passes over rows opening before `from` from now on (see
    /// [`SeriesReader::skip_before`]); rows it already read ahead are handed out as before.
    pub fn skip_before(&self, from: TimestampMs) {
        self.skip_before.store(from, Ordering::Relaxed);
    }

    /// What was handed out so far; complete once [`PrefetchReader::next_candle`] returned `None`.
    pub fn quality(&self) -> Rc<RefCell<SeriesQuality>> {
        Rc::clone(&self.quality)
    }

    /// The next candle, `None` after the last file (and after an error).
    ///
    /// # Errors
    /// As [`SeriesReader::next_candle`], at the same row; an I/O error if the reading thread
    /// stopped without finishing.
    pub fn next_candle(&mut self) -> Result<Option<Candle>, DataError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let Some(item) = self.batch.next() else {
                match self.rx.recv() {
                    Ok((items, bytes)) => {
                        self.counter.set(self.counter.get() + bytes);
                        self.batch = items.into_iter();
                        continue;
                    }
                    Err(_) => {
                        self.finished = true;
                        return Err(DataError::Io {
                            path: self.origin.clone(),
                            source: std::io::Error::other("the thread reading this file stopped"),
                        });
                    }
                }
            };
            match item {
                Ahead::Duplicate(t) => self.quality.borrow_mut().duplicates.push(t),
                Ahead::Gap(from, to) => self.quality.borrow_mut().gaps.push((from, to)),
                Ahead::Candle(c) => {
                    let mut q = self.quality.borrow_mut();
                    q.first_open.get_or_insert(c.open_time);
                    q.last_close = Some(c.close_time);
                    q.candles += 1;
                    return Ok(Some(c));
                }
                Ahead::End => {
                    self.finished = true;
                    return Ok(None);
                }
                Ahead::Failed(e) => {
                    self.finished = true;
                    return Err(e);
                }
            }
        }
    }
}

/// The reading thread: runs a [`SeriesReader`] and sends what each of its steps found (the
/// gaps and duplicates it recorded on the way, then the candle, the end or the error) until
/// the series ends or the receiver is gone.
fn read_ahead(series: &SeriesFiles, skip_before: Arc<AtomicI64>, tx: &std::sync::mpsc::SyncSender<(Vec<Ahead>, u64)>) {
    let counter = Rc::new(Cell::new(0u64));
    let mut reader = SeriesReader::new(series, Rc::clone(&counter));
    reader.skip_before = skip_before;
    let quality = reader.quality();
    let (mut duplicates, mut gaps, mut sent_bytes) = (0usize, 0usize, 0u64);
    let mut batch = Vec::with_capacity(PREFETCH_BATCH);
    loop {
        let step = reader.next_candle();
        {
            let q = quality.borrow();
            batch.extend(q.duplicates.iter().skip(duplicates).map(|t| Ahead::Duplicate(*t)));
            batch.extend(q.gaps.iter().skip(gaps).map(|(a, b)| Ahead::Gap(*a, *b)));
            duplicates = q.duplicates.len();
            gaps = q.gaps.len();
        }
        let last = match step {
            Ok(Some(c)) => {
                batch.push(Ahead::Candle(c));
                false
            }
            Ok(None) => {
                batch.push(Ahead::End);
                true
            }
            Err(e) => {
                batch.push(Ahead::Failed(e));
                true
            }
        };
        if last || batch.len() >= PREFETCH_BATCH {
            let bytes = counter.get() - sent_bytes;
            sent_bytes = counter.get();
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PREFETCH_BATCH));
            if tx.send((full, bytes)).is_err() || last {
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::data::{HEADER, format_row};
    use std::io::Write;

    fn candle(open_time: TimestampMs) -> Candle {
        Candle {
            open_time,
            close_time: open_time + 899_999,
            open: 10.0,
            high: 11.0,
            low: 9.0,
            close: 10.5,
            volume: 1.0,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    /// Two files of one series with gaps and repeated rows across batch boundaries, the
    /// second ending in `tail`.
    fn series(dir: &Path, tail: &str) -> SeriesFiles {
        let step = 900_000;
        let mut files = Vec::new();
        for (f, range) in [(0, 0..1_300i64), (1, 1_300..2_000)] {
            let path = dir.join(format!("X-15m-2025-0{}.csv.gz", f + 1));
            let mut w = flate2::write::GzEncoder::new(File::create(&path).unwrap(), flate2::Compression::fast());
            writeln!(w, "{HEADER}").unwrap();
            for i in range {
                if i % 97 == 5 {
                    continue; // a gap
                }
                writeln!(w, "{}", format_row(&candle(i * step))).unwrap();
                if i % 131 == 7 {
                    writeln!(w, "{}", format_row(&candle(i * step))).unwrap(); // a repeat
                }
            }
            if f == 1 {
                write!(w, "{tail}").unwrap();
            }
            w.finish().unwrap();
            files.push(path);
        }
        SeriesFiles { symbol: "X".into(), timeframe: Timeframe::M15, files }
    }

    /// Reads `n` steps from both readers and compares candles, errors and quality after each.
    fn same_steps(series: &SeriesFiles, n: usize) {
        let mut plain = SeriesReader::new(series, Rc::new(Cell::new(0)));
        let mut ahead = PrefetchReader::spawn(series, Rc::new(Cell::new(0))).unwrap();
        for step in 0..n {
            let (a, b) = (plain.next_candle(), ahead.next_candle());
            match (&a, &b) {
                (Ok(x), Ok(y)) => assert_eq!(x, y, "step {step}"),
                (Err(x), Err(y)) => assert_eq!(x.to_string(), y.to_string(), "step {step}"),
                _ => panic!("step {step}: {a:?} vs {b:?}"),
            }
            assert_eq!(*plain.quality().borrow(), *ahead.quality().borrow(), "step {step}");
            if a.is_err() || matches!(a, Ok(None)) {
                return;
            }
        }
    }

    #[test]
    fn read_ahead_hands_out_what_the_plain_reader_does() {
        let dir = tempfile::tempdir().unwrap();
        let clean = series(dir.path(), "");
        same_steps(&clean, 10_000);
        // Stopping early: the quality record covers only what was handed out.
        same_steps(&clean, 700);
        let dir = tempfile::tempdir().unwrap();
        same_steps(&series(dir.path(), "1,2,3\n"), 10_000);
        let dir = tempfile::tempdir().unwrap();
        same_steps(&series(dir.path(), &format!("{}\n", format_row(&candle(0)))), 10_000);
    }

    /// Every candle a reader hands out, and its quality record at the end (or the error).
    fn drain(mut next: impl FnMut() -> Result<Option<Candle>, DataError>) -> Result<Vec<Candle>, String> {
        let mut out = Vec::new();
        loop {
            match next() {
                Ok(Some(c)) => out.push(c),
                Ok(None) => return Ok(out),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    #[test]
    fn rows_before_skip_before_are_passed_over_but_still_checked_for_gaps_repeats_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = series(dir.path(), "");
        let from = 1_500 * 900_000;
        let all = drain({
            let mut r = SeriesReader::new(&s, Rc::new(Cell::new(0)));
            move || r.next_candle()
        })
        .unwrap();
        let full_quality = {
            let r = SeriesReader::new(&s, Rc::new(Cell::new(0)));
            let q = r.quality();
            let mut r = r;
            while r.next_candle().unwrap().is_some() {}
            q.borrow().clone()
        };
        let expected: Vec<Candle> = all.iter().copied().filter(|c| c.open_time >= from).collect();
        assert!(expected.len() < all.len() && !expected.is_empty());

        let mut plain = SeriesReader::new(&s, Rc::new(Cell::new(0)));
        plain.skip_before(from);
        let plain_quality = plain.quality();
        assert_eq!(drain(|| plain.next_candle()).unwrap(), expected);
        let ahead = PrefetchReader::spawn(&s, Rc::new(Cell::new(0))).unwrap();
        ahead.skip_before(from);
        let ahead_quality = ahead.quality();
        let mut ahead = ahead;
        let got = drain(|| ahead.next_candle()).unwrap();
        // The thread may have read a few rows ahead before it was told; none is after `from`
        // that should not be, and the window's candles are all there.
        assert_eq!(got.iter().filter(|c| c.open_time >= from).copied().collect::<Vec<_>>(), expected);
        for q in [plain_quality.borrow().clone(), ahead_quality.borrow().clone()] {
            // Gaps and repeats of the whole file are still found.
            assert_eq!(q.gaps, full_quality.gaps);
            assert_eq!(q.duplicates, full_quality.duplicates);
            assert_eq!(q.last_close, full_quality.last_close);
        }
        assert_eq!(plain_quality.borrow().first_open, Some(from));

        // A row out of time order before `from` is still an error, with its line.
        let path = dir.path().join("Y-15m.csv");
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n{}\n",
                format_row(&candle(1_800_000)),
                format_row(&candle(900_000)),
                format_row(&candle(from))
            ),
        )
        .unwrap();
        let y = SeriesFiles { symbol: "Y".into(), timeframe: Timeframe::M15, files: vec![path] };
        let mut r = SeriesReader::new(&y, Rc::new(Cell::new(0)));
        r.skip_before(from);
        let err = drain(|| r.next_candle()).unwrap_err();
        assert!(err.contains("Y-15m.csv:2:") && err.contains("time order"), "{err}");
    }
}
