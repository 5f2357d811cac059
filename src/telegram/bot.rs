//! The Bot API calls the command task makes: `getUpdates` (long polling), `sendMessage`
//! (answers, with an optional confirmation button) and `answerCallbackQuery`. Every URL holds
//! the bot token, so errors keep only what is safe to show: reqwest errors are stripped of
//! their URL, refusals carry Telegram's code and description.

use std::time::Duration;

use serde_json::json;

use crate::config::Secret;
use crate::telegram::{DecodeError, Update, decode_envelope, decode_updates};

/// Telegram's limit on a message's length, with room to spare.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Time beyond the long poll's own timeout before a `getUpdates` request is given up.
pub const POLL_SLACK: Duration = Duration::from_secs(10);
/// Timeout of a `sendMessage` or `answerCallbackQuery` request.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Bot API call failed. Never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("cannot reach the Bot API: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("the Bot API answered HTTP {0}")]
    Status(u16),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl BotError {
    fn transport(e: reqwest::Error) -> BotError {
        BotError::Transport(e.without_url())
    }
}

/// A Bot API client for one bot.
#[derive(Clone)]
pub struct BotApi {
    client: reqwest::Client,
    api_url: String,
    token: Secret,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi").field("api_url", &self.api_url).field("token", &"[REDACTED]").finish()
    }
}

impl BotApi {
    /// A client for `api_url` (no trailing slash needed) and the bot `token`.
    ///
    /// # Errors
    /// [`BotError::Transport`] when the HTTP client cannot be built.
    pub fn new(api_url: &str, token: Secret) -> Result<BotApi, BotError> {
        let client = reqwest::Client::builder().build().map_err(BotError::transport)?;
        Ok(BotApi { client, api_url: api_url.trim_end_matches('/').to_string(), token })
    }

    /// POSTs `body` to `method`; the answer's status and body.
    async fn post(
        &self,
        method: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), BotError> {
        let url = format!("{}/bot{}/{method}", self.api_url, self.token.expose());
        let response = self.client.post(url).timeout(timeout).json(body).send().await.map_err(BotError::transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(BotError::transport)?;
        Ok((status, bytes.to_vec()))
    }

    async fn call(&self, method: &str, body: serde_json::Value, timeout: Duration) -> Result<(), BotError> {
        let (status, bytes) = self.post(method, &body, timeout).await?;
        match decode_envelope(&bytes) {
            Ok(_) => Ok(()),
            Err(DecodeError::Json(_)) if !status.is_success() => Err(BotError::Status(status.as_u16())),
            Err(e) => Err(e.into()),
        }
    }

    /// Updates after `offset` (every update below it is confirmed to Telegram and never sent
    /// again); waits up to `timeout` for one to arrive.
    ///
    /// # Errors
    /// [`BotError`]: unreachable, refused (409 when another poller or a webhook is set), or
    /// an answer we cannot read.
    pub async fn get_updates(&self, offset: Option<i64>, timeout: Duration) -> Result<Vec<Update>, BotError> {
        let mut body = json!({"timeout": timeout.as_secs(), "allowed_updates": ["message", "callback_query"]});
        if let (Some(o), Some(map)) = (offset, body.as_object_mut()) {
            map.insert("offset".into(), json!(o));
        }
        let (status, bytes) = self.post("getUpdates", &body, timeout + POLL_SLACK).await?;
        match decode_updates(&bytes) {
            Ok(u) => Ok(u),
            Err(DecodeError::Json(_)) if !status.is_success() => Err(BotError::Status(status.as_u16())),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends `text` to `chat_id`; with `button`, an inline button whose press sends `button`
    /// back as the callback data.
    ///
    /// # Errors
    /// [`BotError`].
    pub async fn send_message(&self, chat_id: i64, text: &str, button: Option<&str>) -> Result<(), BotError> {
        let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
        let mut body = json!({"chat_id": chat_id, "text": text, "disable_web_page_preview": true});
        if let (Some(data), Some(map)) = (button, body.as_object_mut()) {
            map.insert(
                "reply_markup".into(),
                json!({"inline_keyboard": [[{"text": "Confirm", "callback_data": data}]]}),
            );
        }
        self.call("sendMessage", body, SEND_TIMEOUT).await
    }

    /// Acknowledges a button press.
    ///
    /// # Errors
    /// [`BotError`].
    pub async fn answer_callback(&self, callback_id: &str) -> Result<(), BotError> {
        self.call("answerCallbackQuery", json!({"callback_query_id": callback_id}), SEND_TIMEOUT).await
    }
}
