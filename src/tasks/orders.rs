//! Order execution: one future per [`Command`], whose [`Outcome`] goes back to the position
//! manager as an event. The manager never awaits the exchange: a request that hangs on one
//! symbol delays nothing on another. The futures run on the daemon's task tracker and are
//! never aborted halfway (shutdown waits for them within the grace period).

use std::sync::Arc;

use rust_decimal::Decimal;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::core::liveness::Liveness;
use crate::core::models::TimestampMs;
use crate::exchange::Exchange;
use crate::manager::commands::{AccountSnapshot, Command, OrderRequest, OrderResult, Outcome};

/// Carries out one command against the exchange.
pub async fn execute<E: Exchange>(ex: &E, cmd: &Command) -> OrderResult {
    match &cmd.request {
        OrderRequest::Entry { req, margin, leverage } => {
            if let Err(e) = ex.prepare_symbol(&req.symbol, *margin, *leverage).await {
                return OrderResult::Entry(Err(e));
            }
            OrderResult::Entry(ex.place_market(req).await)
        }
        OrderRequest::Close { req, .. } => OrderResult::Close(ex.place_market(req).await),
        OrderRequest::PlaceStop(req) => OrderResult::StopPlaced(ex.place_stop(req).await),
        OrderRequest::CancelStop { algo_id } => OrderResult::StopCancelled(ex.cancel_stop(&cmd.symbol, *algo_id).await),
        OrderRequest::CancelAll => OrderResult::AllCancelled(ex.cancel_all(&cmd.symbol).await),
        OrderRequest::LookupOrder { client_order_id } => {
            OrderResult::Lookup(ex.query_order(&cmd.symbol, client_order_id).await)
        }
        OrderRequest::ReadPosition => OrderResult::Position(
            ex.positions().await.map(|ps| ps.into_iter().find(|p| p.symbol == cmd.symbol && p.qty > Decimal::ZERO)),
        ),
    }
}

/// Spawns `cmd` on `tracker`; its outcome is sent on `outcomes`.
pub fn spawn<E: Exchange>(tracker: &TaskTracker, ex: &Arc<E>, cmd: Command, outcomes: &mpsc::Sender<Outcome>) {
    let ex = Arc::clone(ex);
    let tx = outcomes.clone();
    tracker.spawn(async move {
        let result = execute(&*ex, &cmd).await;
        if tx.send(Outcome { id: cmd.id, symbol: cmd.symbol, result }).await.is_err() {
            tracing::warn!("order outcome arrived after the position manager stopped");
        }
    });
}

/// Spawns a full account read (balance, positions, stops); the exchange's reachability is
/// recorded for `/health`.
pub fn spawn_resync<E: Exchange>(
    tracker: &TaskTracker,
    ex: &Arc<E>,
    requested_at: TimestampMs,
    liveness: &Arc<Liveness>,
    snapshots: &mpsc::Sender<AccountSnapshot>,
) {
    let ex = Arc::clone(ex);
    let tx = snapshots.clone();
    let liveness = Arc::clone(liveness);
    tracker.spawn(async move {
        let balance = ex.balance().await;
        liveness.set_exchange_reachable(balance.is_ok());
        let balance = balance.map_err(|e| tracing::warn!(error = %e, "balance refresh failed")).ok();
        let positions = ex.positions().await.map_err(|e| tracing::warn!(error = %e, "position resync failed")).ok();
        let stops = ex.open_stops().await.map_err(|e| tracing::warn!(error = %e, "could not list open stops")).ok();
        let _ = tx.send(AccountSnapshot { requested_at, balance, positions, stops }).await;
    });
}
