//! Telegram commands end to end (issue 13): the live engine with the real Binance client
//! against the fake Binance server, and a fake Telegram Bot API (`getUpdates`,
//! `sendMessage`, `answerCallbackQuery`) on loopback.
//!
//! - a command from a chat that is not allowed does nothing, gets no answer, and is counted;
//! - `/pause` from an allowed chat pauses entries, journaled with channel `telegram`;
//! - a restart polls from the journaled offset and does not execute an old command again,
//!   even though the fake Bot API would still hand it out;
//! - `/forceexit` asks for confirmation and does nothing until it comes (a typed confirm or
//!   the inline button), then closes the position with a reduce-only order; the read
//!   commands answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::Uri;
use axum::response::IntoResponse;
use daemon::credentials;
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, Settings, load};
use kinetic::exchange::binance::BinanceClient;
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use support::fake_binance::{FakeBinance, FakeConfig, SymbolSpec};
use tokio_util::sync::CancellationToken;

const XRP: &str = "XRPUSDT";
const BOT_TOKEN: &str = "123456:telegram-test-token-ABCdef";
const ALLOWED: i64 = 100;
const STRANGER: i64 = 999;

/// What the fake Bot API holds and saw.
#[derive(Default)]
struct BotState {
    /// Every update ever queued; like Telegram before confirmation, handed out again to any
    /// poll whose offset does not move past it.
    updates: Vec<Value>,
    /// The offset of each getUpdates call, in order.
    offsets: Vec<Option<i64>>,
    /// sendMessage bodies.
    sent: Vec<Value>,
    /// answerCallbackQuery ids.
    acks: Vec<String>,
    /// Requests with a wrong token.
    bad_token: usize,
}

type Bot = Arc<Mutex<BotState>>;

async fn fake_bot() -> (String, Bot) {
    let state: Bot = Arc::default();
    let shared = Arc::clone(&state);
    let app = axum::Router::new().fallback(move |uri: Uri, body: Bytes| {
        let state = Arc::clone(&shared);
        async move {
            let path = uri.path().to_string();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let Some(method) = path.strip_prefix(&format!("/bot{BOT_TOKEN}/")) else {
                state.lock().unwrap().bad_token += 1;
                return (
                    axum::http::StatusCode::UNAUTHORIZED,
                    axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
                )
                    .into_response();
            };
            match method {
                "getUpdates" => {
                    let offset = body["offset"].as_i64();
                    let pending: Vec<Value> = {
                        let mut s = state.lock().unwrap();
                        s.offsets.push(offset);
                        s.updates
                            .iter()
                            .filter(|u| offset.is_none_or(|o| u["update_id"].as_i64().unwrap() >= o))
                            .cloned()
                            .collect()
                    };
                    if pending.is_empty() {
                        // A short long poll: keeps the test quick.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    axum::Json(json!({"ok": true, "result": pending})).into_response()
                }
                "sendMessage" => {
                    state.lock().unwrap().sent.push(body);
                    axum::Json(json!({"ok": true, "result": {"message_id": 1}})).into_response()
                }
                "answerCallbackQuery" => {
                    state.lock().unwrap().acks.push(body["callback_query_id"].as_str().unwrap_or("").to_string());
                    axum::Json(json!({"ok": true, "result": true})).into_response()
                }
                _ => axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Queues a text message from `chat`; returns its update id.
fn say(bot: &Bot, chat: i64, text: &str) -> i64 {
    let mut s = bot.lock().unwrap();
    let id = 1000 + s.updates.len() as i64;
    s.updates.push(json!({"update_id": id, "message": {"message_id": id, "from": {"id": 7, "is_bot": false},
        "chat": {"id": chat, "type": "private"}, "date": unix_now(), "text": text}}));
    id
}

/// Queues a press on an inline button carrying `data`; returns its update id.
fn press(bot: &Bot, chat: i64, data: &str) -> i64 {
    let mut s = bot.lock().unwrap();
    let id = 1000 + s.updates.len() as i64;
    s.updates.push(json!({"update_id": id, "callback_query": {"id": format!("cb{id}"), "from": {"id": 8},
        "message": {"message_id": 1, "chat": {"id": chat}, "date": unix_now()}, "data": data}}));
    id
}

fn replies_to(bot: &Bot, chat: i64) -> Vec<Value> {
    bot.lock().unwrap().sent.iter().filter(|m| m["chat_id"] == chat).cloned().collect()
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the bot has polled past update `id` (so it has been handled).
async fn handled(bot: &Bot, id: i64) {
    wait_for(&format!("a poll past update {id}"), 15, || {
        bot.lock().unwrap().offsets.iter().any(|o| o.is_some_and(|o| o > id))
    })
    .await;
}

fn settings_for(fake: &FakeBinance, bot_url: &str) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    env.insert("KINETIC__NOTIFY__TELEGRAM__API_URL".into(), bot_url.into());
    env.insert("KINETIC__NOTIFY__TELEGRAM__COMMANDS_ENABLED".into(), "true".into());
    env.insert("KINETIC__NOTIFY__TELEGRAM__COMMAND_CHAT_IDS".into(), ALLOWED.to_string());
    env.insert("KINETIC__NOTIFY__TELEGRAM__POLL_TIMEOUT_SECS".into(), "1".into());
    env.insert("KINETIC_TELEGRAM_BOT_TOKEN".into(), BOT_TOKEN.into());
    load(&ConfigSources { file: None, env }).unwrap()
}

struct Daemon {
    status: Arc<RwLock<StatusSnapshot>>,
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start(fake: &FakeBinance, bot_url: &str, journal: &Path) -> Daemon {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let settings = settings_for(fake, bot_url);
    let client = BinanceClient::new(&settings.exchange, Some(credentials())).unwrap();
    let journal = Journal::open(journal).unwrap();
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let metrics = Metrics::default();
    let handles = EngineHandles::new(Arc::clone(&status), metrics.clone());
    let cancel = CancellationToken::new();
    let engine = Engine::new(Arc::new(client), settings, journal, handles, false).unwrap();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await.unwrap() });
    Daemon { status, metrics, cancel, task }
}

impl Daemon {
    fn snapshot(&self) -> StatusSnapshot {
        self.status.read().unwrap().clone()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(12), self.task).await.expect("stops within the grace").unwrap();
    }
}

/// A fake exchange with an XRPUSDT long (799.9 at 2.0) the daemon adopts at start.
async fn fake_with_xrp() -> Arc<FakeBinance> {
    let mut cfg = FakeConfig::default();
    cfg.symbols.push(SymbolSpec::new(XRP, dec!(2), dec!(0.0001), dec!(0.1), dec!(5)));
    let fake = Arc::new(FakeBinance::start(cfg).await);
    fake.set_wallet_balance(dec!(10000));
    fake.set_price(XRP, dec!(2));
    fake.set_position(XRP, dec!(799.9), dec!(2));
    fake
}

fn amount(fake: &FakeBinance, symbol: &str) -> Decimal {
    fake.position(symbol).map(|p| p.amount).unwrap_or_default()
}

fn journaled_commands(path: &Path) -> Vec<kinetic::store::CommandRecord> {
    Journal::open(path).unwrap().recent_commands(100).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_ignored_pause_pauses_and_a_restart_does_not_repeat_it() {
    let fake = fake_with_xrp().await;
    let (bot_url, bot) = fake_bot().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let d = start(&fake, &bot_url, &path).await;

    // A chat that is not allowed: nothing happens, nothing is answered, it is counted.
    let id = say(&bot, STRANGER, "/pause");
    handled(&bot, id).await;
    let id = say(&bot, STRANGER, "/forceexit all");
    handled(&bot, id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replies_to(&bot, STRANGER).is_empty());
    let s = d.snapshot();
    assert!(!s.control.paused && s.control.recent_commands.is_empty(), "{:?}", s.control);
    assert!(journaled_commands(&path).is_empty());
    assert_eq!(d.metrics.control_refused.get_or_create(&Metrics::label("channel", "telegram")).get(), 2);
    assert_eq!(amount(&fake, XRP), dec!(799.9));

    // /pause from the allowed chat pauses; journaled as telegram with the chat and user.
    let pause_id = say(&bot, ALLOWED, "/pause");
    wait_for("the pause", 15, || d.snapshot().control.paused).await;
    wait_for("the answer", 10, || !replies_to(&bot, ALLOWED).is_empty()).await;
    let answer = replies_to(&bot, ALLOWED)[0]["text"].as_str().unwrap().to_string();
    assert!(answer.starts_with("Done: pause"), "{answer}");
    let commands = journaled_commands(&path);
    assert_eq!(commands.len(), 1);
    assert_eq!((commands[0].channel.as_str(), commands[0].who.as_str()), ("telegram", "chat 100 user 7"));
    assert_eq!(commands[0].action, "pause");
    handled(&bot, pause_id).await;
    // The read commands answer from the snapshot and the journal.
    for (cmd, expect) in
        [("/status", "PAUSED by telegram:chat 100 user 7"), ("/profit", "All time: 0 USDT over 0 trade(s)")]
    {
        let before = replies_to(&bot, ALLOWED).len();
        say(&bot, ALLOWED, cmd);
        wait_for(cmd, 10, || replies_to(&bot, ALLOWED).len() > before).await;
        let text = replies_to(&bot, ALLOWED)[before]["text"].as_str().unwrap().to_string();
        assert!(text.contains(expect), "{cmd}: {text}");
    }
    d.stop().await;
    let polls_before_restart = bot.lock().unwrap().offsets.len();

    // The fake still hands out every update to a poll that does not move past it. The
    // restarted daemon polls from the journaled offset: the old /pause is not run again.
    let d = start(&fake, &bot_url, &path).await;
    wait_for("the restarted daemon's polls", 20, || bot.lock().unwrap().offsets.len() > polls_before_restart + 2).await;
    let first = bot.lock().unwrap().offsets[polls_before_restart];
    assert!(first.is_some_and(|o| o > pause_id), "first poll after the restart asks for {first:?}");
    let commands = journaled_commands(&path);
    assert_eq!(commands.len(), 1, "nothing executed again: {commands:?}");
    assert!(d.snapshot().control.paused, "the pause itself survives the restart");
    assert_eq!(bot.lock().unwrap().bad_token, 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forceexit_asks_for_confirmation_before_it_closes() {
    let fake = fake_with_xrp().await;
    let (bot_url, bot) = fake_bot().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let d = start(&fake, &bot_url, &path).await;
    wait_for("the position adopted with its stop", 20, || {
        d.snapshot().positions.len() == 1 && fake.unprotected_positions().is_empty()
    })
    .await;

    // The request only asks: a confirmation text and a button.
    let id = say(&bot, ALLOWED, "/forceexit xrpusdt");
    handled(&bot, id).await;
    wait_for("the question", 10, || !replies_to(&bot, ALLOWED).is_empty()).await;
    let question = replies_to(&bot, ALLOWED)[0].clone();
    assert!(question["text"].as_str().unwrap().contains("/forceexit XRPUSDT confirm"), "{question}");
    assert_eq!(question["reply_markup"]["inline_keyboard"][0][0]["callback_data"], "/forceexit XRPUSDT confirm");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(journaled_commands(&path).is_empty());
    assert_eq!(amount(&fake, XRP), dec!(799.9), "nothing closed before the confirmation");

    // A confirmation for another target confirms nothing.
    let id = say(&bot, ALLOWED, "/forceexit all confirm");
    handled(&bot, id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(journaled_commands(&path).is_empty());

    // The button confirms: acknowledged, journaled as telegram, closed reduce-only.
    let id = press(&bot, ALLOWED, "/forceexit XRPUSDT confirm");
    wait_for("the position closed", 20, || amount(&fake, XRP).is_zero()).await;
    handled(&bot, id).await;
    assert_eq!(bot.lock().unwrap().acks, [format!("cb{id}")]);
    let commands = journaled_commands(&path);
    assert_eq!(commands.len(), 1);
    assert_eq!((commands[0].action.as_str(), commands[0].channel.as_str()), ("forceexit", "telegram"));
    assert_eq!(commands[0].who, "chat 100 user 8");
    assert_eq!(commands[0].args, json!({"symbol": "XRPUSDT"}));
    let closes: Vec<_> = fake
        .orders()
        .into_iter()
        .filter(|o| o.symbol == XRP && o.algo_id.is_none() && o.executed_qty > Decimal::ZERO)
        .collect();
    assert!(!closes.is_empty() && closes.iter().all(|o| o.reduce_only), "{closes:?}");
    d.stop().await;
}
