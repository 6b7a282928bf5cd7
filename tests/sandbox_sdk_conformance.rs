//! The brokers' official Python SDKs against the real `warden sandbox angelone|dhan|upstox|
//! fyers` binaries (SPEC §9.3): each logs in where the SDK can, reads the profile, and sees an
//! expired token as expired in its own error shape. Scripts: `tests/python/*_sdk.py`. Each SDK
//! lives in its own virtualenv under `$WARDEN_SDK_VENVS` (default `~/.cache/warden-sdk-venvs`,
//! made by `.ci/run`): their pins clash (fyers-apiv3 pins requests and aiohttp). Without one,
//! the test prints a visible SKIP line and passes, unless `WARDEN_TEST_REQUIRE_ALL=1`.

mod common;

use common::*;

/// The SDK's python, or `None` after a visible skip.
fn sdk(test: &str, venv: &str, module: &str) -> Option<std::path::PathBuf> {
    match sdk_python(venv, module) {
        Ok(py) => Some(py),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

#[test]
fn smartapi_python_against_the_angelone_sandbox() {
    let Some(py) = sdk("smartapi_python", "angelone", "SmartApi") else {
        return;
    };
    let s = BrokerSandbox::start("angelone", &[]);
    let args = ["api_key", "client_code", "pin", "totp_secret"].map(|k| s.printed(k));
    let url = s.url();
    run_sdk_script(
        &py,
        "angelone_sdk.py",
        &[&[url.as_str()][..], &args].concat(),
    );
}

#[test]
fn dhanhq_against_the_dhan_sandbox() {
    let Some(py) = sdk("dhanhq", "dhanhq", "dhanhq") else {
        return;
    };
    let s = BrokerSandbox::start("dhan", &[]);
    let args = ["client_id", "pin", "totp_secret", "app_id", "app_secret"].map(|k| s.printed(k));
    let url = s.url();
    run_sdk_script(&py, "dhan_sdk.py", &[&[url.as_str()][..], &args].concat());
}

#[test]
fn upstox_python_sdk_against_the_upstox_sandbox() {
    let Some(py) = sdk("upstox_python_sdk", "upstox", "upstox_client") else {
        return;
    };
    let port = free_port().to_string();
    let notifier = format!("http://127.0.0.1:{port}/upstox/notify");
    let s = BrokerSandbox::start("upstox", &["--notifier-url", &notifier]);
    let keys = [
        "client_id",
        "client_secret",
        "redirect_url",
        "user_id",
        "pin",
        "totp_secret",
    ];
    let args = keys.map(|k| s.printed(k));
    let url = s.url();
    let head = [url.as_str()];
    let tail = [port.as_str()];
    run_sdk_script(&py, "upstox_sdk.py", &[&head[..], &args, &tail].concat());
}

#[test]
fn fyers_apiv3_against_the_fyers_sandbox() {
    let Some(py) = sdk("fyers_apiv3", "fyers", "fyers_apiv3") else {
        return;
    };
    let s = BrokerSandbox::start("fyers", &[]);
    let keys = [
        "client_id",
        "secret_key",
        "redirect_url",
        "user_id",
        "pin",
        "totp_secret",
    ];
    let args = keys.map(|k| s.printed(k));
    let url = s.url();
    run_sdk_script(&py, "fyers_sdk.py", &[&[url.as_str()][..], &args].concat());
}
