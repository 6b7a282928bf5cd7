//! The ticker WebSocket (SPEC §8), served on the sandbox's one listener at the real ticker's
//! path and query, `/?api_key=K&access_token=T`, so that the official client works with
//! `KiteTicker(api_key, access_token, root="ws://ADDR")`.
//!
//! Per connection: the upgrade is refused with 403 for a dead or foreign token; text
//! messages `{"a":"subscribe"|"unsubscribe","v":[tokens]}` and `{"a":"mode","v":[mode,[tokens]]}`
//! change what is streamed; every tick interval one binary message carries a packet per
//! subscribed instrument in its mode (see `packet.rs`); a 1-byte binary heartbeat goes out
//! when nothing else did for a second; the connection is closed the moment its token dies.

pub mod market;
pub mod packet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::state::{ApiError, Kite};
use packet::Mode;

/// Kite's limit of instruments per connection.
pub const MAX_SUBSCRIPTIONS: usize = 3000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Close code sent when the token dies (the client then reconnects and meets the 403).
const CLOSE_TOKEN_DIED: u16 = 1008;

type Params = std::collections::HashMap<String, String>;

/// `GET /` with `Upgrade: websocket`. Without the upgrade, `/` stays a 404 like any unknown
/// path of the API host.
pub(super) async fn upgrade(
    State(kite): State<Arc<Kite>>,
    Query(q): Query<Params>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return ApiError {
            status: 404,
            error_type: "GeneralException",
            message: "Route not found.".into(),
        }
        .into_response();
    };
    let api_key = q.get("api_key").cloned().unwrap_or_default();
    let access_token = q.get("access_token").cloned().unwrap_or_default();
    match kite.ticker_session(&api_key, &access_token) {
        Ok(expires) => ws.on_upgrade(move |socket| {
            let session = Session {
                kite,
                api_key,
                access_token,
                expires,
            };
            session.stream(socket)
        }),
        Err(e) => e.into_response(),
    }
}

struct Session {
    kite: Arc<Kite>,
    api_key: String,
    access_token: String,
    expires: Instant,
}

/// Why a connection ended, for the close frame.
enum End {
    TokenDied,
    ClientLeft,
}

impl Session {
    async fn stream(self, mut socket: WebSocket) {
        self.kite.ticker_opened();
        let end = self.serve(&mut socket).await;
        self.kite.ticker_closed();
        if let End::TokenDied = end {
            let frame = CloseFrame {
                code: CLOSE_TOKEN_DIED,
                reason: "access token expired or invalidated".into(),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
        }
    }

    async fn serve(&self, socket: &mut WebSocket) -> End {
        let mut deaths = self.kite.token_deaths();
        // A death between the upgrade check and the subscription above would go unnoticed.
        if !self.kite.token_alive(&self.api_key, &self.access_token) {
            return End::TokenDied;
        }
        let expiry = tokio::time::sleep_until(self.expires.into());
        tokio::pin!(expiry);
        let mut ticks = tokio::time::interval(self.kite.opts.tick_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut subscribed: BTreeMap<u32, Mode> = BTreeMap::new();
        let mut last_sent = Instant::now();
        loop {
            let outgoing = tokio::select! {
                _ = &mut expiry => return End::TokenDied,
                changed = deaths.changed() => {
                    if changed.is_err() || !self.kite.token_alive(&self.api_key, &self.access_token) {
                        return End::TokenDied;
                    }
                    continue;
                }
                _ = ticks.tick(), if !subscribed.is_empty() => {
                    Message::Binary(self.ticks(&subscribed).into())
                }
                // A heartbeat only when nothing else went out for a second (with slack: the
                // interval and the last send may be a hair apart).
                _ = heartbeat.tick() => {
                    if last_sent.elapsed() + Duration::from_millis(50) < HEARTBEAT_EVERY {
                        continue;
                    }
                    Message::Binary(vec![0u8].into())
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        match command(&mut subscribed, text.as_str()) {
                            // Newly subscribed or re-moded instruments get a tick at once.
                            Ok(touched) if !touched.is_empty() => {
                                Message::Binary(self.ticks(&touched).into())
                            }
                            Ok(_) => continue,
                            Err(message) => {
                                Message::Text(json!({"type": "error", "data": message}).to_string().into())
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return End::ClientLeft,
                    // Pings are answered by the library; binary from a client means nothing.
                    Some(Ok(_)) => continue,
                },
            };
            if socket.send(outgoing).await.is_err() {
                return End::ClientLeft;
            }
            last_sent = Instant::now();
        }
    }

    fn ticks(&self, instruments: &BTreeMap<u32, Mode>) -> Vec<u8> {
        let tokens: Vec<u32> = instruments.keys().copied().collect();
        let quotes = self
            .kite
            .market
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .quotes(&tokens, Instant::now());
        let packets: Vec<Vec<u8>> = quotes
            .iter()
            .map(|q| packet::encode_packet(q, instruments[&q.instrument_token]))
            .collect();
        packet::encode_message(&packets)
    }
}

/// Apply one client text message to the subscriptions; the instruments whose stream it
/// started or changed, or the error message to send back.
fn command(
    subscribed: &mut BTreeMap<u32, Mode>,
    text: &str,
) -> Result<BTreeMap<u32, Mode>, String> {
    let msg: Value =
        serde_json::from_str(text).map_err(|_| "Invalid message: not JSON.".to_string())?;
    let action = msg["a"].as_str().unwrap_or_default();
    let tokens = |v: &Value| -> Result<Vec<u32>, String> {
        v.as_array()
            .ok_or_else(|| {
                format!("Invalid `{action}` message: expected a list of instrument tokens.")
            })?
            .iter()
            .map(|t| {
                t.as_u64()
                    .and_then(|t| u32::try_from(t).ok())
                    .ok_or_else(|| format!("Invalid instrument token: {t}."))
            })
            .collect()
    };
    let mut touched = BTreeMap::new();
    match action {
        "subscribe" => {
            for t in tokens(&msg["v"])? {
                if !subscribed.contains_key(&t) && subscribed.len() >= MAX_SUBSCRIPTIONS {
                    return Err(format!(
                        "Subscription limit of {MAX_SUBSCRIPTIONS} instruments per connection reached."
                    ));
                }
                // New subscriptions stream in quote mode until told otherwise.
                let mode = *subscribed.entry(t).or_insert(Mode::Quote);
                touched.insert(t, mode);
            }
        }
        "unsubscribe" => {
            for t in tokens(&msg["v"])? {
                subscribed.remove(&t);
            }
        }
        "mode" => {
            let name = msg["v"][0].as_str().unwrap_or_default();
            let mode = Mode::parse(name)
                .ok_or_else(|| format!("Invalid mode `{name}`: use ltp, quote or full."))?;
            for t in tokens(&msg["v"][1])? {
                if let Some(m) = subscribed.get_mut(&t) {
                    *m = mode;
                    touched.insert(t, mode);
                }
            }
        }
        other => {
            return Err(format!(
                "Unknown action `{other}`: use subscribe, unsubscribe or mode."
            ))
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_defaults_to_quote_and_mode_changes_only_subscribed() {
        let mut subs = BTreeMap::new();
        let t = command(&mut subs, r#"{"a":"subscribe","v":[738561,256265]}"#).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(subs[&738561], Mode::Quote);
        let t = command(&mut subs, r#"{"a":"mode","v":["full",[738561,5633]]}"#).unwrap();
        assert_eq!(
            t.into_iter().collect::<Vec<_>>(),
            vec![(738561, Mode::Full)]
        );
        assert!(!subs.contains_key(&5633));
        command(&mut subs, r#"{"a":"unsubscribe","v":[256265]}"#).unwrap();
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn bad_messages_get_an_error_not_a_hang_up() {
        let mut subs = BTreeMap::new();
        for bad in [
            "nope",
            r#"{"a":"mode","v":["fast",[1]]}"#,
            r#"{"a":"subscribe","v":"x"}"#,
            r#"{"a":"subscribe","v":[-1]}"#,
            r#"{"a":"buy"}"#,
        ] {
            assert!(command(&mut subs, bad).is_err(), "{bad}");
        }
    }
}
