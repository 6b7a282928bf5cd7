//! Typed form of `supervisor.toml` (SPEC §3).
//!
//! These structs are what the rest of warden reads. They are produced by
//! [`crate::config::load`], which expands `${VAR}`, resolves `*_file` secrets and relative
//! paths, rejects unknown keys and cross-checks the result before anything here is used.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A credential read from the config. Its `Debug` never shows the value, so a stray
/// `{:?}` in a log line cannot leak it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value itself: call only where it is sent to its one legitimate peer.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// `"5s"`, `"1m30s"`, `"500ms"`, `"24h"`.
pub mod duration {
    use super::*;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        // A visitor rather than `String::deserialize`, so that `timeout = 5` is reported as
        // "expected a duration string" instead of a bare "expected a string".
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"5s\", \"1m30s\" or \"500ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
    /// Longest duration accepted anywhere: timers beyond it would overflow the clock.
    pub const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

    pub fn parse(s: &str) -> Result<Duration, String> {
        let d = humantime::parse_duration(s.trim()).map_err(|e| {
            format!(
                "invalid duration {s:?} ({e}); use forms like \"500ms\", \"5s\", \"1m30s\", \"24h\""
            )
        })?;
        if d > MAX {
            return Err(format!("duration {s:?} is too long; use at most \"366d\""));
        }
        Ok(d)
    }
}

fn d(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default)]
pub struct Config {
    pub supervisor: SupervisorConfig,
    pub http: HttpConfig,
    /// Absent section: warden supervises programs and manages no token.
    pub token: Option<TokenConfig>,
    /// `[tokens.NAME]`: several tokens, each kept by its own keeper (SPEC §9.1). Never
    /// together with `[token]` (validation says so).
    pub tokens: BTreeMap<String, TokenConfig>,
    pub notify: NotifyConfig,
    /// The exchange's trading sessions (README "Market hours"); NSE's by default.
    pub market: MarketConfig,
    pub programs: BTreeMap<String, ProgramConfig>,
    /// The file this was read from (absolute). Set by the loader.
    #[serde(skip)]
    pub source: PathBuf,
    /// What the loader found suspicious but valid, located like problems. `warden check`
    /// prints them, `warden run` logs them at start and on reload; they never fail a load.
    #[serde(skip)]
    pub warnings: Vec<super::Problem>,
    /// Every environment variable a secret key was read from (`${VAR}` inside it), with the
    /// first such key's dotted path. Set by the loader; programs do not inherit these
    /// (SPEC §7.1).
    #[serde(skip)]
    pub secret_vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SupervisorConfig {
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    /// Resolved against the config file's directory by the loader.
    pub state_dir: PathBuf,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            shutdown_timeout: d(20),
            log_format: LogFormat::Text,
            state_dir: PathBuf::from(".warden"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Empty means unset.
    pub api_token: Secret,
    /// Empty means `http://{listen}`.
    pub public_url: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9180".parse().expect("valid literal"),
            api_token: Secret::default(),
            public_url: String::new(),
        }
    }
}

impl HttpConfig {
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }
    pub fn api_token(&self) -> Option<&Secret> {
        (!self.api_token.is_empty()).then_some(&self.api_token)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenProviderKind {
    #[default]
    Kite,
    Command,
    None,
    Fyers,
    Dhan,
    Upstox,
    Angelone,
}

impl TokenProviderKind {
    /// The provider's name as written in the config (`kite`, `command`, …): also the name of
    /// a lone `[token]`. Derived from the variant's name, lowercased like serde's renaming, so
    /// it stays right as providers are added.
    pub fn name(self) -> String {
        format!("{self:?}").to_ascii_lowercase()
    }

    /// The env key a token of this provider is written under unless `env_key` says otherwise.
    pub fn default_env_key(self) -> &'static str {
        match self {
            TokenProviderKind::Kite | TokenProviderKind::Command | TokenProviderKind::None => {
                "KITE_ACCESS_TOKEN"
            }
            TokenProviderKind::Fyers => "FYERS_ACCESS_TOKEN",
            TokenProviderKind::Dhan => "DHAN_ACCESS_TOKEN",
            TokenProviderKind::Upstox => "UPSTOX_ACCESS_TOKEN",
            TokenProviderKind::Angelone => "ANGELONE_JWT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TokenConfig {
    pub provider: TokenProviderKind,
    /// Resolved against the config file's directory by the loader.
    pub env_file: PathBuf,
    /// Empty in the file means "the provider's default" (filled in by the loader).
    #[serde(default)]
    pub env_key: String,
    pub timezone: String,
    /// "HH:MM" in `timezone`.
    pub expires_at: String,
    /// "HH:MM" in `timezone`.
    pub refresh_at: String,
    #[serde(with = "duration")]
    pub check_interval: Duration,
    #[serde(with = "duration")]
    pub min_interval: Duration,
    pub max_attempts: u32,
    #[serde(with = "duration")]
    pub attempt_window: Duration,
    #[serde(with = "duration")]
    pub verify_timeout: Duration,
    pub store: StoreConfig,
    pub kite: Option<KiteConfig>,
    pub command: Option<CommandProviderConfig>,
    pub fyers: Option<FyersConfig>,
    pub dhan: Option<DhanConfig>,
    pub upstox: Option<UpstoxConfig>,
    pub angelone: Option<AngelOneConfig>,
    /// When `env_file` was named by a symlink: that link (the loader has replaced `env_file`
    /// by the regular file it points at, which is what warden writes and watches).
    #[serde(skip)]
    pub env_file_link: Option<PathBuf>,
    /// The token's name (SPEC §9.1): NAME of `[tokens.NAME]`, or the provider's name for a
    /// lone `[token]`. Set by the loader.
    #[serde(skip)]
    pub name: String,
    /// `env_key` was not in the file: the loader gave it the provider's default.
    #[serde(skip)]
    pub env_key_defaulted: bool,
    /// Declared as `[tokens.NAME]`: its state lives in `{state_dir}/tokens/NAME.json` (and
    /// `NAME.login.json`) instead of `token.json` / `login.json`. Set by the loader.
    #[serde(skip)]
    pub named: bool,
}

impl TokenConfig {
    /// What metrics, logs and the API call this token: its name, or its provider's when the
    /// config was built by hand without one.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            self.provider.name()
        } else {
            self.name.clone()
        }
    }

    /// warden's own record of the token (SPEC §4, §9.1).
    pub fn token_json_path(&self, state_dir: &std::path::Path) -> PathBuf {
        if self.named {
            state_dir.join("tokens").join(format!("{}.json", self.name))
        } else {
            state_dir.join("token.json")
        }
    }

    /// The login safety memory of this token (SPEC §4).
    pub fn login_json_path(&self, state_dir: &std::path::Path) -> PathBuf {
        if self.named {
            state_dir
                .join("tokens")
                .join(format!("{}.login.json", self.name))
        } else {
            state_dir.join("login.json")
        }
    }
}

impl Config {
    /// Every token warden keeps, in order: the lone `[token]`, or each `[tokens.NAME]` by name.
    /// A token with `provider = "none"` is included (it is configured, though nothing keeps it).
    pub fn token_list(&self) -> Vec<&TokenConfig> {
        match &self.token {
            Some(t) => vec![t],
            None => self.tokens.values().collect(),
        }
    }

    /// The token called `name`, if there is one.
    pub fn token_named(&self, name: &str) -> Option<&TokenConfig> {
        self.token_list()
            .into_iter()
            .find(|t| t.display_name() == name)
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            provider: TokenProviderKind::Kite,
            env_file: PathBuf::from(".env"),
            env_key: "KITE_ACCESS_TOKEN".into(),
            timezone: "Asia/Kolkata".into(),
            expires_at: "06:00".into(),
            refresh_at: "06:05".into(),
            check_interval: d(300),
            min_interval: d(30),
            max_attempts: 3,
            attempt_window: d(3600),
            verify_timeout: d(30),
            store: StoreConfig::default(),
            kite: None,
            command: None,
            fyers: None,
            dhan: None,
            upstox: None,
            angelone: None,
            env_file_link: None,
            name: String::new(),
            env_key_defaulted: false,
            named: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    File,
    Redis,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// redis:// or rediss:// (may carry a password, hence Secret).
    pub url: Secret,
    /// Redis AUTH password when it is not in the url (`password_file` for a secrets file).
    pub password: Secret,
    /// Every Redis key warden uses starts with this, then the api_key.
    pub key_prefix: String,
    /// PEM CA certificate(s) to trust for `rediss://` instead of the bundled public roots (a
    /// private CA). Relative to the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// How long a leader's lock outlives its last renewal: a dead leader is replaced after
    /// at most this long.
    #[serde(with = "duration")]
    pub lock_ttl: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::File,
            url: Secret::default(),
            password: Secret::default(),
            key_prefix: "warden:".into(),
            ca_file: None,
            lock_ttl: d(15),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LoginMode {
    #[default]
    Manual,
    Totp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct KiteConfig {
    pub api_key: String,
    pub api_secret: Secret,
    pub user_id: String,
    pub login: LoginMode,
    pub password: Secret,
    pub totp_secret: Secret,
    pub login_base: String,
    pub api_base: String,
}

impl Default for KiteConfig {
    fn default() -> Self {
        KiteConfig {
            api_key: String::new(),
            api_secret: Secret::default(),
            user_id: String::new(),
            login: LoginMode::Manual,
            password: Secret::default(),
            totp_secret: Secret::default(),
            login_base: "https://kite.zerodha.com".into(),
            api_base: "https://api.kite.trade".into(),
        }
    }
}

/// `[token.fyers]` (SPEC §9.2): Fyers API v3, manual (auth-code) login; with `pin`, the
/// 15-day refresh token is tried before a person is asked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct FyersConfig {
    /// The app id with its `-100` suffix.
    pub client_id: String,
    pub secret_key: Secret,
    /// The fy_id the token must belong to.
    pub user_id: String,
    /// Optional: enables `validate-refresh-token`.
    pub pin: Secret,
    /// Only "manual" exists (Fyers documents no automated login); accepted for symmetry
    /// with the other brokers' tables.
    pub login: LoginMode,
    pub api_base: String,
    /// `{public_url}/fyers/callback`, the redirect URL registered with the app: set by the
    /// loader from `[http] public_url`.
    #[serde(skip)]
    pub redirect_uri: String,
}

impl Default for FyersConfig {
    fn default() -> Self {
        FyersConfig {
            client_id: String::new(),
            secret_key: Secret::default(),
            user_id: String::new(),
            pin: Secret::default(),
            login: LoginMode::Manual,
            api_base: "https://api-t1.fyers.in/api/v3".into(),
            redirect_uri: String::new(),
        }
    }
}

/// `[token.dhan]` (SPEC §9.2): DhanHQ v2, by PIN + TOTP (`generateAccessToken`) or by the
/// API key's consent flow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DhanConfig {
    /// The dhanClientId: tokens are minted for it, and a token of any other client is refused.
    pub client_id: String,
    pub login: LoginMode,
    /// totp mode: the login PIN.
    pub pin: Secret,
    /// totp mode: the base32 secret shown when TOTP was enabled on Dhan Web.
    pub totp_secret: Secret,
    /// manual (consent) mode: the API key and its secret.
    pub app_id: String,
    pub app_secret: Secret,
    /// `generateAccessToken`, the consent endpoints and the consent login page.
    pub auth_base: String,
    /// The REST API, with its version: `{api_base}/profile` validates.
    pub api_base: String,
}

impl Default for DhanConfig {
    fn default() -> Self {
        DhanConfig {
            client_id: String::new(),
            login: LoginMode::Manual,
            pin: Secret::default(),
            totp_secret: Secret::default(),
            app_id: String::new(),
            app_secret: Secret::default(),
            auth_base: "https://auth.dhan.co".into(),
            api_base: "https://api.dhan.co/v2".into(),
        }
    }
}

/// How an Upstox token is obtained (SPEC §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstoxLogin {
    /// A person logs in through the authorization dialog; `/upstox/callback` exchanges the code.
    #[default]
    Manual,
    /// The official Access Token Request: the person taps Approve in the Upstox app or on
    /// WhatsApp, and Upstox posts the token to `{public_url}/upstox/notify`.
    Approve,
}

/// `[token.upstox]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UpstoxConfig {
    /// The app's API key (Upstox calls it client_id).
    pub api_key: String,
    pub api_secret: Secret,
    pub user_id: String,
    pub login: UpstoxLogin,
    /// The API and the authorization dialog (`{api_base}/v2/login/authorization/dialog`).
    pub api_base: String,
}

impl Default for UpstoxConfig {
    fn default() -> Self {
        UpstoxConfig {
            api_key: String::new(),
            api_secret: Secret::default(),
            user_id: String::new(),
            login: UpstoxLogin::Manual,
            api_base: "https://api.upstox.com".into(),
        }
    }
}

/// `[token.angelone]` (SPEC §9.2): Angel One SmartAPI.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AngelOneConfig {
    /// The SmartAPI app's key, sent as `X-PrivateKey`.
    pub api_key: String,
    /// The Angel One client code; a session of any other client is refused.
    pub client_code: String,
    pub login: LoginMode,
    /// The trading PIN (`password` of loginByPassword); totp mode only.
    pub pin: Secret,
    /// base32; totp mode only.
    pub totp_secret: Secret,
    pub api_base: String,
    /// Where the publisher login (manual mode) lives.
    pub login_base: String,
    /// The env key the feed token (for the WebSocket) is written under, beside the JWT.
    pub feed_env_key: String,
}

impl Default for AngelOneConfig {
    fn default() -> Self {
        AngelOneConfig {
            api_key: String::new(),
            client_code: String::new(),
            login: LoginMode::Manual,
            pin: Secret::default(),
            totp_secret: Secret::default(),
            api_base: "https://apiconnect.angelone.in".into(),
            login_base: "https://smartapi.angelone.in".into(),
            feed_env_key: "ANGELONE_FEED_TOKEN".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CommandProviderConfig {
    pub command: CommandLine,
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Resolved against the config file's directory by the loader; empty = config dir.
    pub cwd: PathBuf,
    /// Variables removed from the environment the command inherits: those warden read a
    /// secret from, except the broker credentials a refresh script exists to use. Set by the
    /// loader.
    #[serde(skip)]
    pub withheld_env: Vec<String>,
}

impl Default for CommandProviderConfig {
    fn default() -> Self {
        CommandProviderConfig {
            command: CommandLine::default(),
            timeout: d(120),
            cwd: PathBuf::new(),
            withheld_env: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct NotifyConfig {
    pub webhook_url: Secret,
    pub telegram_bot_token: Secret,
    pub telegram_chat_id: String,
    /// Where the Telegram Bot API lives (tests point it at a local sink).
    pub telegram_api_base: String,
    /// `"22:00-07:00"` in `timezone`: nothing is sent inside (docs/notify.md). Empty: none.
    pub quiet_hours: String,
    /// IANA name for `quiet_hours` and the trading days.
    pub timezone: String,
    /// Send only on trading days (weekends are quiet all day).
    pub trading_days_only: bool,
    /// A held event that needs a person goes out once the next session opens within this.
    #[serde(with = "duration")]
    pub lead: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhook_url: Secret::default(),
            telegram_bot_token: Secret::default(),
            telegram_chat_id: String::new(),
            telegram_api_base: String::new(),
            quiet_hours: String::new(),
            timezone: "Asia/Kolkata".into(),
            trading_days_only: false,
            lead: d(90 * 60),
        }
    }
}

/// `[market]`: when the exchange trades. Strings here; `crate::market::calendar` parses them
/// (the loader has checked them, `config::market_rules`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct MarketConfig {
    pub timezone: String,
    /// "HH:MM" in `timezone`.
    pub open: String,
    /// "HH:MM" in `timezone`, after `open`.
    pub close: String,
    /// Dates ("YYYY-MM-DD") without a regular session, in addition to the built-in NSE list.
    pub holidays: Vec<String>,
    /// `false` drops the built-in NSE holidays: only `holidays` count.
    pub builtin_holidays: bool,
    /// Sessions outside the regular ones (Muhurat trading), even on a holiday or weekend.
    pub extra_sessions: Vec<ExtraSession>,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            timezone: "Asia/Kolkata".into(),
            open: "09:15".into(),
            close: "15:30".into(),
            holidays: Vec::new(),
            builtin_holidays: true,
            extra_sessions: Vec::new(),
        }
    }
}

/// One `[[market.extra_sessions]]` entry: `{date = "2026-11-08", open = "18:00", close = "19:15"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExtraSession {
    pub date: String,
    pub open: String,
    pub close: String,
}

/// argv: given as an array, or as a string split like a POSIX shell would (no shell runs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine(pub Vec<String>);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: untagged errors say only "did not match any
        // variant", and lose the index of a bad array element.
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a command: an array of strings like [\"uvicorn\", \"app.main:app\"] or a string",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<CommandLine, E> {
                shell_words::split(s).map(CommandLine).map_err(|e| {
                    E::custom(format!(
                        "cannot split command {s:?}: {e}; close the quote, or write an array"
                    ))
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(CommandLine(argv))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnTokenChange {
    #[default]
    Signal,
    Restart,
    /// The program watches the env file itself: warden sends nothing, then verifies.
    Watch,
    None,
}

/// A signal name as written in the config: "SIGTERM" or "TERM".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub nix::sys::signal::Signal);

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        full.parse::<nix::sys::signal::Signal>()
            .map(SignalName)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown signal {s:?}; use a name like \"SIGTERM\""
                ))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ProgramConfig {
    pub command: CommandLine,
    /// Resolved against the config file's directory by the loader; empty = config dir.
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    /// Resolved against the config file's directory by the loader.
    pub env_file: Option<PathBuf>,
    pub depends_on: Vec<String>,
    pub restart: RestartPolicy,
    #[serde(with = "duration")]
    pub backoff_initial: Duration,
    #[serde(with = "duration")]
    pub backoff_max: Duration,
    pub max_restarts: u32,
    #[serde(with = "duration")]
    pub restart_window: Duration,
    pub stop_signal: SignalName,
    #[serde(with = "duration")]
    pub stop_timeout: Duration,
    pub on_token_change: OnTokenChange,
    pub reload_signal: SignalName,
    pub health: Option<HealthConfig>,
    /// Variables warden read a secret from that this program may still inherit (SPEC §7.1).
    pub pass_env: Vec<String>,
    /// The tokens whose changes this program gets (SPEC §9.1); `None`: every token.
    pub tokens: Option<Vec<String>>,
    /// The variables removed from what this program inherits from warden's environment: every
    /// secret variable not in `pass_env`. Set by the loader, so a reload recomputes it.
    #[serde(skip)]
    pub withheld_env: Vec<String>,
}

impl Default for ProgramConfig {
    fn default() -> Self {
        use nix::sys::signal::Signal;
        ProgramConfig {
            command: CommandLine::default(),
            cwd: PathBuf::new(),
            env: BTreeMap::new(),
            env_file: None,
            depends_on: Vec::new(),
            restart: RestartPolicy::Always,
            backoff_initial: d(1),
            backoff_max: d(60),
            max_restarts: 10,
            restart_window: d(300),
            stop_signal: SignalName(Signal::SIGTERM),
            stop_timeout: d(10),
            on_token_change: OnTokenChange::Signal,
            reload_signal: SignalName(Signal::SIGHUP),
            health: None,
            pass_env: Vec::new(),
            tokens: None,
            withheld_env: Vec::new(),
        }
    }
}

impl ProgramConfig {
    /// Does this program get the changes of the token called `name`?
    pub fn uses_token(&self, name: &str) -> bool {
        self.tokens
            .as_ref()
            .is_none_or(|t| t.iter().any(|n| n == name))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct HealthConfig {
    pub url: String,
    #[serde(with = "duration")]
    pub interval: Duration,
    #[serde(with = "duration")]
    pub timeout: Duration,
    #[serde(with = "duration")]
    pub initial_delay: Duration,
    pub failure_threshold: u32,
    pub auth_status: Vec<u16>,
    /// Regex; empty = unused.
    pub auth_body: String,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            url: String::new(),
            interval: d(5),
            timeout: d(2),
            initial_delay: d(5),
            failure_threshold: 3,
            auth_status: vec![403],
            auth_body: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_parse_in_the_spec_forms() {
        assert_eq!(duration::parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration::parse("5s"), Ok(d(5)));
        assert_eq!(duration::parse("1m30s"), Ok(d(90)));
        assert_eq!(duration::parse(" 24h "), Ok(d(86_400)));
        for bad in ["", "5", "soon", "-1s", "1x"] {
            assert!(duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_from_array_or_shell_words() {
        let c: CommandLine = toml::Value::from("uvicorn 'app main' --port 8000")
            .try_into()
            .unwrap();
        assert_eq!(c.0, ["uvicorn", "app main", "--port", "8000"]);
        let c: CommandLine = toml::Value::from(vec!["a b", "c"]).try_into().unwrap();
        assert_eq!(c.0, ["a b", "c"]);
        assert!(toml::Value::from(5).try_into::<CommandLine>().is_err());
    }

    #[test]
    fn signal_names_with_or_without_sig() {
        use nix::sys::signal::Signal;
        let s: SignalName = toml::Value::from("hup").try_into().unwrap();
        assert_eq!(s.0, Signal::SIGHUP);
        let s: SignalName = toml::Value::from("SIGUSR1").try_into().unwrap();
        assert_eq!(s.0, Signal::SIGUSR1);
        assert!(toml::Value::from("SIGNOPE")
            .try_into::<SignalName>()
            .is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    proptest! {
        #[test]
        fn duration_parsing_never_panics(s in ".{0,64}") {
            let _ = duration::parse(&s);
        }

        #[test]
        fn duration_parsing_never_panics_on_number_like_input(s in "[0-9 .]{0,30}(ns|us|ms|s|m|h|d|w|y|)") {
            let _ = duration::parse(&s);
        }
    }
}
