//! The channel workers: one task per channel, draining its bounded queue in order. Each
//! delivery attempt has a timeout; failures are retried with exponential backoff (1 s, 2 s,
//! 4 s, ...) and then counted as failed. Errors are logged without their URL (a Telegram URL
//! holds the bot token; a Discord or Slack webhook URL is itself a secret).

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::Metrics;
use crate::config::{NotifySettings, OperatorSecrets, Secret, WebhookFormat};
use crate::notify::{Message, Notifier};

/// The webhook signature header: `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Kinetic-Signature";
/// The event kind header of webhook requests.
pub const EVENT_HEADER: &str = "X-Kinetic-Event";

/// Where one channel delivers.
#[derive(Debug, Clone)]
enum Target {
    Telegram { api_url: String, token: Secret, chat_ids: Vec<i64> },
    Webhook { url: Secret, format: WebhookFormat, secret: Option<Secret> },
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error branch cannot happen.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// The webhook body of `m` in `format`.
pub fn webhook_body(m: &Message, format: WebhookFormat) -> serde_json::Value {
    let text = m.event.text();
    match format {
        WebhookFormat::Json => json!({"event": m.event.kind(), "time": m.time, "text": text, "data": m.event}),
        WebhookFormat::Discord => json!({"content": text}),
        WebhookFormat::Slack => json!({"text": text}),
    }
}

/// Starts a worker per configured channel; returns the notifier that feeds them and their
/// tasks (they end once every clone of the notifier is dropped).
pub fn start(
    settings: &NotifySettings,
    secrets: &OperatorSecrets,
    metrics: &Metrics,
) -> (Notifier, Vec<JoinHandle<()>>) {
    let mut notifier = Notifier::new(metrics.clone());
    let mut tasks = Vec::new();
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(settings.timeout_secs.max(1))).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.without_url(), "cannot build the notification HTTP client; notifications off");
            return (notifier, tasks);
        }
    };
    let mut channels: Vec<(&'static str, Vec<String>, Target)> = Vec::new();
    if settings.telegram.enabled
        && let Some(token) = &secrets.telegram_token
    {
        let target = Target::Telegram {
            api_url: settings.telegram.api_url.trim_end_matches('/').to_string(),
            token: token.clone(),
            chat_ids: settings.telegram.chat_ids.clone(),
        };
        channels.push(("telegram", settings.telegram.events.clone(), target));
    }
    if !settings.webhook.url.is_empty() {
        let target = Target::Webhook {
            url: Secret::new(settings.webhook.url.clone()),
            format: settings.webhook.format,
            secret: secrets.webhook_secret.clone(),
        };
        channels.push(("webhook", settings.webhook.events.clone(), target));
    }
    for (name, events, target) in channels {
        let (tx, rx) = mpsc::channel(settings.queue_size.max(1));
        notifier.add(name, events, tx);
        let worker =
            Worker { name, target, client: client.clone(), retries: settings.retries, metrics: metrics.clone() };
        tasks.push(tokio::spawn(worker.run(rx)));
        tracing::info!(channel = name, "notifications on");
    }
    (notifier, tasks)
}

struct Worker {
    name: &'static str,
    target: Target,
    client: reqwest::Client,
    retries: u32,
    metrics: Metrics,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        while let Some(m) = rx.recv().await {
            let mut ok = true;
            for request in self.requests(&m) {
                ok &= self.deliver(request, m.event.kind()).await;
            }
            let family = if ok { &self.metrics.notifications_sent } else { &self.metrics.notifications_failed };
            family.get_or_create(&Metrics::label("channel", self.name)).inc();
        }
    }

    /// The HTTP requests carrying `m` (one per Telegram chat).
    fn requests(&self, m: &Message) -> Vec<(String, Vec<u8>, Option<String>)> {
        match &self.target {
            Target::Telegram { api_url, token, chat_ids } => {
                let url = format!("{api_url}/bot{}/sendMessage", token.expose());
                let text = m.event.text();
                chat_ids
                    .iter()
                    .map(|id| {
                        let body = json!({"chat_id": id, "text": text, "disable_web_page_preview": true});
                        (url.clone(), body.to_string().into_bytes(), None)
                    })
                    .collect()
            }
            Target::Webhook { url, format, secret } => {
                let body = webhook_body(m, *format).to_string().into_bytes();
                let sig = secret.as_ref().map(|s| signature(s.expose(), &body));
                vec![(url.expose().to_string(), body, sig)]
            }
        }
    }

    /// Sends one request with retries; `true` once delivered.
    async fn deliver(&self, (url, body, sig): (String, Vec<u8>, Option<String>), kind: &str) -> bool {
        let mut wait = Duration::from_secs(1);
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2);
            }
            let mut req = self
                .client
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(EVENT_HEADER, kind)
                .body(body.clone());
            if let Some(s) = &sig {
                req = req.header(SIGNATURE_HEADER, s);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return true,
                Ok(r) => {
                    tracing::warn!(channel = self.name, status = r.status().as_u16(), attempt, "notification refused")
                }
                Err(e) => {
                    tracing::warn!(channel = self.name, error = %e.without_url(), attempt, "notification not delivered")
                }
            }
        }
        tracing::error!(channel = self.name, kind, "notification given up after every retry");
        false
    }
}
