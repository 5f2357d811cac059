//! The analyzer task: keeps the incremental indicators of every candidate, fed from the
//! closed candles in the hub, and sends the position manager a complete [`Analysis`] for each
//! candidate's closed 15m candle — only once the 1h and 4h candles closing at the same moment
//! are in, and only while the market streams are live (a candle that closed while they were
//! down is evaluated when they recover). New candidates are warmed up over public REST; the
//! candles go to the ingest task and come back through the hub like any other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::analyzer::SymbolAnalyzer;
use crate::config::StrategySettings;
use crate::core::data_hub::SharedHub;
use crate::core::liveness::Liveness;
use crate::core::models::{Candle, Timeframe, TimestampMs, is_closed_at};
use crate::exchange::{Exchange, ExchangeEvent};
use crate::manager::position_manager::Analysis;
use crate::tasks::scanner::ScanReport;

/// Candles fetched per timeframe to warm a symbol's indicators up.
pub const WARMUP_CANDLES: u16 = 200;

const TIMEFRAMES: [Timeframe; 3] = [Timeframe::H4, Timeframe::H1, Timeframe::M15];

/// True when the candle of `tf` closing at `close_time` (ms, inclusive end) must be in before
/// a 15m candle closing then is scored: the timeframes that close at the same moment.
pub fn closes_together(tf: Timeframe, close_time: TimestampMs) -> bool {
    (close_time + 1).rem_euclid(tf.duration_ms()) == 0
}

/// Whether the analysis of a 15m close at `m15_close` is complete: every higher timeframe
/// that closes at the same moment has that candle in.
pub fn complete(a: &SymbolAnalyzer, m15_close: TimestampMs) -> bool {
    [(Timeframe::H1, &a.h1), (Timeframe::H4, &a.h4)]
        .into_iter()
        .all(|(tf, state)| !closes_together(tf, m15_close) || state.last_close_time().is_some_and(|t| t >= m15_close))
}

/// Everything the analyzer task needs.
pub struct AnalyzerTask<E> {
    pub ex: Arc<E>,
    pub hub: SharedHub,
    pub strategy: StrategySettings,
    pub market: mpsc::Sender<ExchangeEvent>,
    pub candles: watch::Receiver<u64>,
    pub scan: watch::Receiver<ScanReport>,
    pub signals: mpsc::Sender<Analysis>,
    pub liveness: Arc<Liveness>,
    analyzers: HashMap<String, SymbolAnalyzer>,
    /// 15m close waiting for its higher timeframes (or for live streams).
    pending: BTreeMap<String, TimestampMs>,
    warmed: BTreeSet<String>,
    /// The scanner's handled 15m close whose candidates this task has taken in (warm-ups
    /// done): closes up to it can be scored.
    handled_scan: TimestampMs,
}

impl<E: Exchange> AnalyzerTask<E> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ex: Arc<E>,
        hub: SharedHub,
        strategy: StrategySettings,
        market: mpsc::Sender<ExchangeEvent>,
        candles: watch::Receiver<u64>,
        scan: watch::Receiver<ScanReport>,
        signals: mpsc::Sender<Analysis>,
        liveness: Arc<Liveness>,
    ) -> Self {
        AnalyzerTask {
            ex,
            hub,
            strategy,
            market,
            candles,
            scan,
            signals,
            liveness,
            analyzers: HashMap::new(),
            pending: BTreeMap::new(),
            warmed: BTreeSet::new(),
            handled_scan: 0,
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = self.scan.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.on_candidates().await;
                }
                changed = self.candles.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.on_candles().await;
                }
            }
        }
    }

    fn candidates(&self) -> BTreeSet<String> {
        self.scan.borrow().candidate_symbols()
    }

    /// New candidates are warmed up and evaluated on their latest closed candle; symbols that
    /// left the list are forgotten (memory stays O(candidates)).
    async fn on_candidates(&mut self) {
        let scanned = self.scan.borrow().m15_close;
        let candidates = self.candidates();
        self.analyzers.retain(|s, _| candidates.contains(s));
        self.pending.retain(|s, _| candidates.contains(s));
        self.warmed.retain(|s| candidates.contains(s));
        let new: Vec<String> = candidates.iter().filter(|s| !self.warmed.contains(*s)).cloned().collect();
        let mut warmed_now = Vec::new();
        for symbol in new {
            if self.warm_up(&symbol).await {
                self.warmed.insert(symbol.clone());
                warmed_now.push(symbol);
            }
        }
        // Candles that reached the hub meanwhile (a stream close) are fed on top.
        self.on_candles().await;
        // A new candidate is evaluated on its latest closed 15m candle at once.
        for s in warmed_now {
            if !self.pending.contains_key(&s)
                && let Some(t) = self.analyzers.get(&s).and_then(|a| a.m15.last_close_time())
            {
                self.pending.insert(s, t);
            }
        }
        self.handled_scan = self.handled_scan.max(scanned);
        self.flush().await;
    }

    /// Fetches the history of every timeframe over public REST, feeds it to the symbol's
    /// analyzer in order (higher timeframes first) and hands it to the ingest task for the
    /// hub. False when a fetch failed (the next scan tries again).
    async fn warm_up(&mut self, symbol: &str) -> bool {
        let mut a = SymbolAnalyzer::new();
        for tf in TIMEFRAMES {
            match self.ex.klines(symbol, tf, None, None, WARMUP_CANDLES).await {
                Ok(candles) => {
                    let now = self.ex.now_ms();
                    let closed: Vec<Candle> = candles.into_iter().filter(|c| is_closed_at(c, now)).collect();
                    for c in &closed {
                        a.on_closed_candle(tf, c);
                    }
                    let ev = ExchangeEvent::Backfill { symbol: symbol.to_string(), timeframe: tf, candles: closed };
                    if self.market.send(ev).await.is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    tracing::warn!(%symbol, timeframe = tf.as_str(), error = %e, "candle history fetch failed");
                    return false;
                }
            }
        }
        self.analyzers.insert(symbol.to_string(), a);
        true
    }

    /// Feeds every candidate's new closed candles from the hub, oldest first per timeframe
    /// (higher timeframes first), then sends the analyses that are complete.
    async fn on_candles(&mut self) {
        let candidates = self.candidates();
        let mut fresh: Vec<(String, Timeframe, Vec<Candle>)> = Vec::new();
        if let Ok(hub) = self.hub.read() {
            for s in candidates.iter().filter(|s| self.warmed.contains(*s)) {
                let a = self.analyzers.get(s);
                for tf in TIMEFRAMES {
                    let last = a.and_then(|a| a.state(tf)).and_then(|st| st.last_close_time());
                    if let Some(series) = hub.candles(s, tf) {
                        let new: Vec<Candle> =
                            series.iter().filter(|c| last.is_none_or(|t| c.close_time > t)).copied().collect();
                        if !new.is_empty() {
                            fresh.push((s.clone(), tf, new));
                        }
                    }
                }
            }
        }
        for (symbol, tf, candles) in fresh {
            let a = self.analyzers.entry(symbol.clone()).or_default();
            let mut newest = None;
            for c in &candles {
                if a.on_closed_candle(tf, c) {
                    newest = Some(c.close_time);
                }
            }
            if tf == Timeframe::M15
                && let Some(t) = newest
            {
                self.pending.insert(symbol, t);
            }
        }
        self.flush().await;
    }

    /// Sends every pending analysis that is complete, while the market streams are live.
    async fn flush(&mut self) {
        self.send_ready().await;
        // Evaluated up to: everything fed and handled by the scanner, short of what waits.
        let done = match self.pending.values().min() {
            Some(t) => (t - 1).min(self.handled_scan),
            None => self.handled_scan,
        };
        self.liveness.progress.analyzed_m15_close.fetch_max(done, Ordering::SeqCst);
    }

    async fn send_ready(&mut self) {
        let live = self.hub.read().map(|h| h.streams_live()).unwrap_or(false);
        if !live || self.pending.is_empty() {
            return;
        }
        // A close is scored once the scanner has handled it (the candidate set of that close)
        // and the higher timeframes closing with it are in.
        let scanned = self.handled_scan;
        let ready: Vec<(String, TimestampMs)> = self
            .pending
            .iter()
            .filter(|(s, t)| **t <= scanned && self.analyzers.get(*s).is_some_and(|a| complete(a, **t)))
            .map(|(s, t)| (s.clone(), *t))
            .collect();
        for (symbol, t) in ready {
            self.pending.remove(&symbol);
            let Some(a) = self.analyzers.get(&symbol) else { continue };
            if a.m15.last_close_time() != Some(t) {
                continue;
            }
            match Analysis::of(&symbol, a, &self.strategy) {
                Some(analysis) => {
                    tracing::debug!(%symbol, score = analysis.score.total, "analysis complete");
                    self.liveness.progress.signals_sent.fetch_add(1, Ordering::SeqCst);
                    if self.signals.send(analysis).await.is_err() {
                        return;
                    }
                }
                None => tracing::debug!(%symbol, "indicators still warming up"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_timeframes_close_together_with_the_15m_candle() {
        let hour = 3_600_000;
        // 15m candle closing at 01:00 (close_time 00:59:59.999): the 1h closes with it.
        assert!(closes_together(Timeframe::H1, hour - 1));
        assert!(!closes_together(Timeframe::H4, hour - 1));
        assert!(closes_together(Timeframe::H4, 4 * hour - 1));
        assert!(!closes_together(Timeframe::H1, hour + 15 * 60_000 - 1));
    }
}
