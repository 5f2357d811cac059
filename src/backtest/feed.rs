//! The candle feed of a backtest: one streaming source per (symbol, timeframe) file and a
//! k-way merge that hands out closed candles in one global time order. Only the current
//! head row of each file and a bounded read-ahead are in memory, so memory is
//! O(symbols × timeframes), not O(history).
//!
//! Order: ascending close time; at equal close times 4h before 1h before 15m (so when the
//! 15m candle that ends a 4h period is seen, the 4h candle closing with it has been fed too),
//! then by symbol index. Ties are therefore deterministic.
//!
//! Owns reading and ordering rows. It must not decide anything about trading.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::core::models::{Candle, Timeframe, TimestampMs};
use crate::data::funding_history;
use crate::data::reader::PrefetchReader;
use crate::data::{DataError, SeriesFiles, SeriesQuality, SeriesReader, open_file, parse_file_name};

/// Anything that yields closed candles of one symbol and timeframe in ascending time.
pub trait CandleSource {
    /// The next candle, `None` at the end.
    ///
    /// # Errors
    /// I/O and format errors of the underlying file.
    fn next_candle(&mut self) -> Result<Option<Candle>, DataError>;

    /// Passes over the leading candles that open before `from` where the source can do so
    /// without handing them out one by one; the feed drops whatever is left before `from`
    /// itself. The default does nothing.
    fn skip_before(&mut self, _from: TimestampMs) {}
}

/// The files of one series (one file, or a Binance dump per month or day), read row by row
/// on a thread of its own a few hundred rows ahead (in place when no thread can be started):
/// decompressing and parsing the files was a third of a backtest's work, and it now overlaps
/// the replay.
pub struct FileCandleSource {
    reader: SourceReader,
}

enum SourceReader {
    Ahead(PrefetchReader),
    InPlace(SeriesReader),
}

impl FileCandleSource {
    /// Opens one data file; the header (if any) is checked at the first read.
    ///
    /// # Errors
    /// None today (files open lazily); kept fallible for callers.
    pub fn open(path: &Path, counter: Rc<Cell<u64>>) -> Result<Self, DataError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parsed = parse_file_name(&name);
        let series = SeriesFiles {
            symbol: parsed.as_ref().map_or_else(|| name.clone(), |p| p.symbol.clone()),
            timeframe: parsed.map_or(Timeframe::M15, |p| p.timeframe),
            files: vec![path.to_path_buf()],
        };
        Ok(Self::series(&series, counter))
    }

    /// Reads every file of `series` in time order.
    pub fn series(series: &SeriesFiles, counter: Rc<Cell<u64>>) -> Self {
        let reader = match PrefetchReader::spawn(series, Rc::clone(&counter)) {
            Some(r) => SourceReader::Ahead(r),
            None => SourceReader::InPlace(SeriesReader::new(series, counter)),
        };
        FileCandleSource { reader }
    }

    /// What the files held (range, gaps, duplicates), filled in as candles are handed out.
    pub fn quality(&self) -> Rc<RefCell<SeriesQuality>> {
        match &self.reader {
            SourceReader::Ahead(r) => r.quality(),
            SourceReader::InPlace(r) => r.quality(),
        }
    }
}

impl CandleSource for FileCandleSource {
    fn next_candle(&mut self) -> Result<Option<Candle>, DataError> {
        match &mut self.reader {
            SourceReader::Ahead(r) => r.next_candle(),
            SourceReader::InPlace(r) => r.next_candle(),
        }
    }

    /// The reader reads only the open time of the rows before `from` and does not hand them
    /// out (a 1h file often starts years before the window).
    fn skip_before(&mut self, from: TimestampMs) {
        match &self.reader {
            SourceReader::Ahead(r) => r.skip_before(from),
            SourceReader::InPlace(r) => r.skip_before(from),
        }
    }
}

/// Candles already in memory (tests, benchmarks, a dry-run replay of recorded candles).
#[derive(Debug, Clone)]
pub struct MemorySource {
    candles: Arc<[Candle]>,
    pos: usize,
}

impl MemorySource {
    pub fn new(candles: Arc<[Candle]>) -> Self {
        MemorySource { candles, pos: 0 }
    }
}

impl CandleSource for MemorySource {
    fn next_candle(&mut self) -> Result<Option<Candle>, DataError> {
        let c = self.candles.get(self.pos).copied();
        self.pos += 1;
        Ok(c)
    }

    /// Every run of a sweep starts its window years into some series (a 1h file from 2019):
    /// stepping over them here saves copying each through the feed.
    fn skip_before(&mut self, from: TimestampMs) {
        let rest = self.candles.get(self.pos..).unwrap_or_default();
        self.pos += rest.iter().take_while(|c| c.open_time < from).count();
    }
}

/// Rank of a timeframe at equal close times: higher timeframes first.
fn tf_rank(tf: Timeframe) -> u8 {
    match tf {
        Timeframe::D1 => 0,
        Timeframe::H4 => 1,
        Timeframe::H2 => 2,
        Timeframe::H1 => 3,
        Timeframe::M30 => 4,
        Timeframe::M15 => 5,
        Timeframe::M5 => 6,
        Timeframe::M1 => 7,
    }
}

/// One input stream of the merge.
pub struct Stream {
    pub symbol: usize,
    pub tf: Timeframe,
    source: Box<dyn CandleSource>,
    head: Option<Candle>,
}

/// The k-way merge over all streams, limited to candles with `open_time` in `[from, to)`.
pub struct Feed {
    streams: Vec<Stream>,
    heap: BinaryHeap<Reverse<(TimestampMs, u8, usize, usize)>>,
    from: TimestampMs,
    to: TimestampMs,
    /// Stream index of each symbol's 15m candles.
    m15: Vec<Option<usize>>,
    /// Close time of the latest 15m candle handed out (any symbol).
    last_m15_close: Option<TimestampMs>,
}

impl Feed {
    /// An empty feed for candles with open time in `[from, to)`.
    pub fn new(from: TimestampMs, to: TimestampMs) -> Self {
        Feed { streams: Vec::new(), heap: BinaryHeap::new(), from, to, m15: Vec::new(), last_m15_close: None }
    }

    /// Adds the stream of `symbol` (an index into the engine's symbol list) at `tf` and reads
    /// its first candle in the window.
    ///
    /// # Errors
    /// Reading the first rows failed.
    pub fn add(&mut self, symbol: usize, tf: Timeframe, mut source: Box<dyn CandleSource>) -> Result<(), DataError> {
        source.skip_before(self.from);
        let idx = self.streams.len();
        self.streams.push(Stream { symbol, tf, source, head: None });
        if tf == Timeframe::M15 {
            if self.m15.len() <= symbol {
                self.m15.resize(symbol + 1, None);
            }
            if let Some(slot) = self.m15.get_mut(symbol) {
                *slot = Some(idx);
            }
        }
        self.refill(idx)
    }

    /// Reads the next in-window candle of stream `idx` into its head and the heap.
    fn refill(&mut self, idx: usize) -> Result<(), DataError> {
        let (from, to) = (self.from, self.to);
        let Some(stream) = self.streams.get_mut(idx) else {
            return Ok(());
        };
        stream.head = None;
        while let Some(c) = stream.source.next_candle()? {
            if c.open_time < from {
                continue;
            }
            if c.open_time >= to {
                break;
            }
            stream.head = Some(c);
            self.heap.push(Reverse((c.close_time, tf_rank(stream.tf), stream.symbol, idx)));
            break;
        }
        Ok(())
    }

    /// Close time of the next candle, if any.
    pub fn peek_close_time(&self) -> Option<TimestampMs> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// The next candle in global order with its symbol index and timeframe.
    ///
    /// # Errors
    /// Reading the following row of the same file failed.
    pub fn next_candle(&mut self) -> Result<Option<(usize, Timeframe, Candle)>, DataError> {
        let Some(Reverse((_, _, _, idx))) = self.heap.pop() else {
            return Ok(None);
        };
        let Some(stream) = self.streams.get(idx) else {
            return Ok(None);
        };
        let (symbol, tf) = (stream.symbol, stream.tf);
        let Some(candle) = stream.head else {
            return Ok(None);
        };
        self.refill(idx)?;
        if tf == Timeframe::M15 {
            self.last_m15_close = Some(candle.close_time);
        }
        Ok(Some((symbol, tf, candle)))
    }

    /// Close time of the latest 15m candle handed out so far, of any symbol.
    pub fn last_m15_close(&self) -> Option<TimestampMs> {
        self.last_m15_close
    }

    /// The next (not yet handed out) 15m candle of `symbol`: the bar an entry decided now fills
    /// in, at its open.
    pub fn next_m15(&self, symbol: usize) -> Option<&Candle> {
        let idx = (*self.m15.get(symbol)?)?;
        self.streams.get(idx)?.head.as_ref()
    }
}

/// Funding rates of one symbol, streamed in time order (`funding_time,funding_rate,mark_price`).
pub struct FundingSource {
    reader: Box<dyn BufRead>,
    path: PathBuf,
    line: String,
    line_no: usize,
    /// The next unread event: (funding time rounded to the hour, rate as a fraction).
    head: Option<(TimestampMs, f64)>,
}

impl FundingSource {
    /// Opens a funding file (plain or gzip).
    ///
    /// # Errors
    /// The file cannot be opened or its first row is malformed.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        Self::over(path, open_file(path, Rc::new(Cell::new(0)))?)
    }

    /// A funding source over the decompressed text of a funding file already in memory
    /// (a sweep reads each file once and replays it for every point); `path` names it in
    /// errors.
    ///
    /// # Errors
    /// The first row is malformed.
    pub fn from_text(path: &Path, text: Arc<[u8]>) -> Result<Self, DataError> {
        Self::over(path, Box::new(std::io::Cursor::new(text)))
    }

    /// A source reading `reader`, positioned on its first row.
    fn over(path: &Path, reader: Box<dyn BufRead>) -> Result<Self, DataError> {
        let mut f = FundingSource { reader, path: path.to_path_buf(), line: String::new(), line_no: 0, head: None };
        f.advance()?;
        Ok(f)
    }

    fn advance(&mut self) -> Result<(), DataError> {
        self.head = None;
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_line(&mut self.line)
                .map_err(|source| DataError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(());
            }
            self.line_no += 1;
            if funding_history::is_header_or_blank(self.line_no, &self.line) {
                continue;
            }
            let malformed =
                |reason: String| DataError::Malformed { path: self.path.clone(), line: self.line_no, reason };
            let (t, rate, _) = funding_history::parse_line(&self.line).map_err(malformed)?;
            // A decimal number already; as f64 it is the same value.
            let r = rate.parse::<f64>().map_err(|e| malformed(format!("funding rate `{rate}`: {e}")))?;
            self.head = Some((funding_history::settle_hour(t), r));
            return Ok(());
        }
    }

    /// The rate settled at `t` (an 8 h boundary), if the file has one. Calls must come in
    /// ascending `t`; earlier rows are skipped.
    ///
    /// # Errors
    /// Reading the file failed.
    pub fn rate_at(&mut self, t: TimestampMs) -> Result<Option<f64>, DataError> {
        while let Some((ht, _)) = self.head {
            if ht >= t {
                break;
            }
            self.advance()?;
        }
        Ok(self.head.filter(|(ht, _)| *ht == t).map(|(_, r)| r))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::data::parse_row;

    fn c(open_time: i64, tf: Timeframe, px: f64) -> Candle {
        Candle {
            open_time,
            close_time: open_time + tf.duration_ms() - 1,
            open: px,
            high: px,
            low: px,
            close: px,
            volume: 1.0,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    #[test]
    fn merge_orders_by_close_time_then_timeframe_then_symbol() {
        let h = Timeframe::H1.duration_ms();
        let q = Timeframe::M15.duration_ms();
        let mut feed = Feed::new(0, 2 * h);
        let m15: Vec<Candle> = (0..8).map(|i| c(i * q, Timeframe::M15, 1.0)).collect();
        let h1: Vec<Candle> = (0..2).map(|i| c(i * h, Timeframe::H1, 1.0)).collect();
        feed.add(1, Timeframe::M15, Box::new(MemorySource::new(m15.clone().into()))).unwrap();
        feed.add(0, Timeframe::M15, Box::new(MemorySource::new(m15.into()))).unwrap();
        feed.add(0, Timeframe::H1, Box::new(MemorySource::new(h1.into()))).unwrap();
        let mut got = Vec::new();
        while let Some((s, tf, c)) = feed.next_candle().unwrap() {
            got.push((c.close_time, tf, s));
        }
        assert_eq!(got.len(), 18);
        assert_eq!(got[..2], [(q - 1, Timeframe::M15, 0), (q - 1, Timeframe::M15, 1)]);
        assert_eq!(got[6..9], [(h - 1, Timeframe::H1, 0), (h - 1, Timeframe::M15, 0), (h - 1, Timeframe::M15, 1)]);
        assert!(got.windows(2).all(|w| w[0] <= w[1] || w[0].0 == w[1].0));
    }

    #[test]
    fn a_funding_rate_outside_a_fraction_is_refused() {
        let path = Path::new("funding/X.csv");
        let text = |t: &str| -> Arc<[u8]> { Arc::from(t.as_bytes()) };
        let mut ok =
            FundingSource::from_text(path, text("funding_time,funding_rate,mark_price\n28800000,-0.0375,1\n")).unwrap();
        assert_eq!(ok.rate_at(28_800_000).unwrap(), Some(-0.0375));
        let e = FundingSource::from_text(path, text("28800000,69152.2,0.0001\n")).err().unwrap().to_string();
        assert!(e.contains("funding/X.csv:1") && e.contains("not a fraction"), "{e}");
    }

    #[test]
    fn parse_row_reads_the_design_format() {
        let c = parse_row("1755388800000,117342.1,117500,117300,117450.5,123.4,1755389699999,,,,").unwrap();
        assert_eq!(c.open, 117342.1);
        assert_eq!(c.quote_volume, 0.0);
        assert_eq!(parse_row("1, 2,3,1,2,5,900, , , ,").unwrap().open, 2.0);
        assert!(parse_row("1,2,3,1,2,5").is_err());
        assert!(parse_row("1,2,1,3,2,5,900,,,,").is_err());
    }
}
