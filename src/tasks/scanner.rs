//! The scanner task: it reads the 24 h tickers and the closed 15m candles from the hub, applies
//! the scanner's filters and ranking, publishes the candidates on a `watch`, and keeps the kline
//! subscriptions to candidates ∪ held symbols. Symbols that pass the ticker filters but whose
//! 15m candles are not streamed get them over public REST; those candles go to the ingest task
//! like any other backfill.
//!
//! When it scans: at start, then at 15m closes — once the exchange clock is past the close by the
//! closed-candle margin (1 s), so every symbol's final kline is in — when `scanner.interval_secs`
//! have passed since the last scan (exchange time). Entries are only evaluated at 15m closes, so this is the same
//! rule as the backtest's: with the default 60 s a scan at every close, with 3600 s at every
//! fourth. Every handled close is published (`m15_close`), scanned or not: the analyzer scores
//! a close only once the scanner has handled it, so the candidate set of a decision is the one
//! the backtest uses.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::CandidateStatus;
use crate::config::ScannerSettings;
use crate::core::data_hub::SharedHub;
use crate::core::models::{Candle, Ticker, Timeframe, TimestampMs, is_closed_at};
use crate::exchange::{Exchange, ExchangeEvent, StreamControl};
use crate::scanner::market_scanner::{Candidate, ScanInput, prefilter, scan, volume_ratio_of};

/// One scan's result, for the analyzer (candidates) and `/status`.
pub use crate::api::ScanStatus as ScanReport;

fn candidate_view(c: &Candidate) -> CandidateStatus {
    CandidateStatus {
        symbol: c.symbol.clone(),
        volume_ratio: c.volume_ratio,
        price_change_pct: c.price_change_pct,
        rank_score: c.rank_score,
    }
}

/// Everything the scanner task needs.
pub struct ScannerTask<E> {
    pub ex: Arc<E>,
    pub hub: SharedHub,
    pub settings: ScannerSettings,
    /// Tradable symbols (PERPETUAL, TRADING, USDT).
    pub tradable: HashSet<String>,
    pub control: StreamControl,
    /// The ingest task's market channel (REST-fetched candles and tickers go there).
    pub market: mpsc::Sender<ExchangeEvent>,
    pub held: watch::Receiver<BTreeSet<String>>,
    pub report: watch::Sender<ScanReport>,
    /// Symbols whose candles the hub keeps (survivors ∪ held).
    pub keep: watch::Sender<BTreeSet<String>>,
    /// Mark prices arrived (the exchange clock moved: a replay's clock moves with them).
    pub marks: watch::Receiver<u64>,
}

impl<E: Exchange> ScannerTask<E> {
    pub async fn run(mut self, cancel: CancellationToken) {
        let interval_ms = i64::try_from(self.settings.interval_secs).unwrap_or(i64::MAX / 1000).max(1) * 1000;
        let mut wake = tokio::time::interval(Duration::from_secs(1));
        wake.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let start_close = self.latest_close();
        self.scan(start_close).await;
        let mut last_close = start_close;
        let mut last_scan = self.ex.now_ms();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = self.held.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.update_subscriptions();
                    continue;
                }
                changed = self.marks.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                _ = wake.tick() => {}
            }
            let close = self.latest_close();
            if close <= last_close {
                continue;
            }
            last_close = close;
            if close + 1 - last_scan >= interval_ms {
                last_scan = close + 1;
                self.scan(close).await;
            } else {
                self.report.send_modify(|r| r.m15_close = close);
            }
        }
    }

    /// The latest 15m close the exchange clock is past by the closed-candle margin: every
    /// stream's final kline of that close is in by then, and a REST fetch returns it closed.
    fn latest_close(&self) -> TimestampMs {
        let step = Timeframe::M15.duration_ms();
        let now = self.ex.now_ms();
        (now - crate::core::models::CANDLE_CLOSE_MARGIN_MS - 1).div_euclid(step) * step - 1
    }

    fn update_subscriptions(&self) {
        let mut set = self.report.borrow().candidate_symbols();
        set.extend(self.held.borrow().iter().cloned());
        self.control.set_kline_symbols(set);
    }

    async fn tickers(&self) -> Vec<Ticker> {
        let from_hub: Vec<Ticker> = match self.hub.read() {
            Ok(h) => h.tickers.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        if !from_hub.is_empty() {
            return from_hub;
        }
        // Before the ticker stream's first message: one REST read, shared through the hub.
        match self.ex.tickers().await {
            Ok(t) => {
                let _ = self.market.send(ExchangeEvent::Tickers(t.clone())).await;
                t
            }
            Err(e) => {
                tracing::warn!(error = %e, "scan skipped: tickers unavailable");
                Vec::new()
            }
        }
    }

    /// The last closed 15m candles of `symbol`: from the hub when current, else over REST.
    async fn closed_15m(&self, symbol: &str, now: TimestampMs) -> Vec<Candle> {
        let want = self.settings.volume_lookback.saturating_add(1);
        let step = Timeframe::M15.duration_ms();
        // The latest 15m candle that should be closed by now.
        let latest_close = (now - crate::core::models::CANDLE_CLOSE_MARGIN_MS).div_euclid(step) * step - 1;
        let cached: Vec<Candle> = match self.hub.read() {
            Ok(h) => h
                .candles(symbol, Timeframe::M15)
                .map(|s| {
                    let all: Vec<Candle> = s.iter().copied().collect();
                    all.into_iter().rev().take(want).rev().collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if cached.len() >= want && cached.last().is_some_and(|c| c.close_time >= latest_close) {
            return cached;
        }
        let limit = u16::try_from(want + 2).unwrap_or(u16::MAX);
        match self.ex.klines(symbol, Timeframe::M15, None, None, limit).await {
            Ok(candles) => {
                let closed: Vec<Candle> = candles.into_iter().filter(|c| is_closed_at(c, now)).collect();
                let _ = self
                    .market
                    .send(ExchangeEvent::Backfill {
                        symbol: symbol.to_string(),
                        timeframe: Timeframe::M15,
                        candles: closed.clone(),
                    })
                    .await;
                closed
            }
            Err(e) => {
                tracing::warn!(%symbol, error = %e, "15m candles unavailable for the volume filter");
                cached
            }
        }
    }

    async fn scan(&mut self, m15_close: TimestampMs) {
        let now = self.ex.now_ms();
        let tickers = self.tickers().await;
        if tickers.is_empty() {
            self.report.send_modify(|r| r.m15_close = r.m15_close.max(m15_close));
            return;
        }
        let tradable: Vec<&Ticker> = tickers.iter().filter(|t| self.tradable.contains(&t.symbol)).collect();
        let survivors: Vec<Ticker> = prefilter(tradable, &self.settings).into_iter().cloned().collect();
        let mut inputs = Vec::with_capacity(survivors.len());
        for t in &survivors {
            let candles = self.closed_15m(&t.symbol, now).await;
            let ratio = volume_ratio_of(&candles, &self.settings).filter(|r| r.is_finite());
            inputs.push(ScanInput { ticker: t.clone(), volume_ratio: ratio });
        }
        let ranked = scan(&inputs, &self.settings);
        let report = ScanReport {
            time: now,
            m15_close,
            symbols: tickers.len(),
            prefiltered: survivors.len(),
            candidates: ranked.iter().map(candidate_view).collect(),
        };
        tracing::info!(symbols = report.symbols, prefiltered = report.prefiltered,
            candidates = ?report.candidate_symbols(), "scan");
        let mut keep: BTreeSet<String> = survivors.iter().map(|t| t.symbol.clone()).collect();
        keep.extend(self.held.borrow().iter().cloned());
        self.keep.send_replace(keep);
        self.report.send_replace(report);
        self.update_subscriptions();
    }
}
