//! The brokers' official Python SDKs against the real `warden sandbox angelone|dhan|upstox|
//! fyers` binaries (SPEC §9.3): each logs in where the SDK can, reads the profile, and sees an
//! expired token as expired in its own error shape. Scripts: `tests/python/*_sdk.py`. Each SDK
//! lives in its own virtualenv under `$WARDEN_SDK_VENVS` (default `~/.cache/warden-sdk-venvs`,
//! made by `.ci/run`): their pins clash (fyers-apiv3 pins requests and aiohttp). Without one,
//! the test prints a visible SKIP line and passes, unless `WARDEN_TEST_REQUIRE_ALL=1`.

mod common;

use common::*;

/// Start `warden sandbox BROKER` with `flags`, then run `script` under the `venv`'s python
/// (which must import `module`, else a visible skip) with the sandbox's URL, the printed values
/// of `keys`, and `extra`.
fn conformance(
    test: &str,
    (venv, module): (&str, &str),
    (broker, flags): (&str, &[&str]),
    script: &str,
    keys: &[&str],
    extra: &[&str],
) {
    let py = match sdk_python(venv, module) {
        Ok(py) => py,
        Err(why) => return skip(test, &why),
    };
    let s = BrokerSandbox::start(broker, flags);
    let url = s.url();
    let mut args = vec![url.as_str()];
    args.extend(keys.iter().map(|k| s.printed(k)));
    args.extend(extra);
    run_sdk_script(&py, script, &args);
}

#[test]
fn smartapi_python_against_the_angelone_sandbox() {
    let keys = ["api_key", "client_code", "pin", "totp_secret"];
    conformance(
        "smartapi_python",
        ("angelone", "SmartApi"),
        ("angelone", &[]),
        "angelone_sdk.py",
        &keys,
        &[],
    );
}

#[test]
fn dhanhq_against_the_dhan_sandbox() {
    let keys = ["client_id", "pin", "totp_secret", "app_id", "app_secret"];
    conformance(
        "dhanhq",
        ("dhanhq", "dhanhq"),
        ("dhan", &[]),
        "dhan_sdk.py",
        &keys,
        &[],
    );
}

/// The script serves the notifier webhook itself, on a port picked here.
#[test]
fn upstox_python_sdk_against_the_upstox_sandbox() {
    let port = free_port().to_string();
    let notifier = format!("http://127.0.0.1:{port}/upstox/notify");
    let keys = [
        "client_id",
        "client_secret",
        "redirect_url",
        "user_id",
        "pin",
        "totp_secret",
    ];
    let sandbox = ("upstox", &["--notifier-url", notifier.as_str()][..]);
    conformance(
        "upstox_python_sdk",
        ("upstox", "upstox_client"),
        sandbox,
        "upstox_sdk.py",
        &keys,
        &[&port],
    );
}

#[test]
fn fyers_apiv3_against_the_fyers_sandbox() {
    let keys = [
        "client_id",
        "secret_key",
        "redirect_url",
        "user_id",
        "pin",
        "totp_secret",
    ];
    conformance(
        "fyers_apiv3",
        ("fyers", "fyers_apiv3"),
        ("fyers", &[]),
        "fyers_sdk.py",
        &keys,
        &[],
    );
}
