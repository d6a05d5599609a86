//! A headless Chromium (Debian's `chromium`) driven over the DevTools protocol
//! (flattened sessions, tungstenite), for the dashboard tests: open a page, evaluate
//! JavaScript in it, wait for a condition, save a screenshot.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::Engine;
use tungstenite::Message;

use super::ws::Ws;

/// Flags of every Chromium the tests start: headless, and quiet (no sandbox, GPU,
/// updates, sync or first-run work).
pub const CHROMIUM_HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];

/// A headless Chromium with one page open.
pub struct Browser {
    child: std::process::Child,
    ws: Ws,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium with the profile `profile` and opens `url` in a 1280x900 window.
    pub fn open(chromium: &Path, profile: &Path, url: &str) -> Browser {
        Browser::open_sized(chromium, profile, url, (1280, 900))
    }

    /// As [`Browser::open`], with a window of `size` CSS pixels.
    pub fn open_sized(chromium: &Path, profile: &Path, url: &str, size: (u32, u32)) -> Browser {
        use std::io::BufRead;
        let mut child = std::process::Command::new(chromium)
            .args(CHROMIUM_HEADLESS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--window-size={},{}", size.0, size.1))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run chromium");
        let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let endpoint = loop {
            line.clear();
            if err.read_line(&mut line).unwrap() == 0 {
                panic!("chromium exited without a DevTools endpoint");
            }
            if let Some(i) = line.find("ws://") {
                break line[i..].trim().to_owned();
            }
        };
        std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
        let host = endpoint
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        let (ws, _) = tungstenite::client::client(
            endpoint.as_str(),
            TcpStream::connect(host).expect("DevTools port"),
        )
        .expect("DevTools WebSocket");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = b.call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": url }),
        );
        let id = target["targetId"].as_str().unwrap().to_owned();
        let attached = b.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": id, "flatten": true }),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_owned();
        b
    }

    /// Calls a DevTools method (on the page's session, or the browser's with `None`);
    /// returns its result. Panics on a protocol error.
    pub fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let Message::Text(t) = self.ws.read().expect("DevTools message") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Calls a DevTools method on the page.
    pub fn page_call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let s = self.session.clone();
        self.call(Some(&s), method, params)
    }

    /// Evaluates JavaScript in the page; returns its value.
    pub fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self.page_call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": js, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// Waits until `js` evaluates to true; on a timeout, panics showing `context` (a
    /// JavaScript expression, evaluated then).
    pub fn wait_for_showing(&mut self, js: &str, within: Duration, context: &str) {
        let deadline = Instant::now() + within;
        loop {
            if self.eval(js) == serde_json::Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page never satisfied {js}; {context}:\n{}",
                self.eval(context)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `js` evaluates to true; on a timeout, panics showing the tail.
    pub fn wait_for(&mut self, js: &str, within: Duration) {
        self.wait_for_showing(js, within, "document.getElementById('tail').innerText");
    }

    /// Saves a PNG of the page as it is now (the whole page, beyond the window) at
    /// `path`; returns its size in bytes.
    pub fn screenshot(&mut self, path: &Path) -> usize {
        let r = self.page_call(
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(path, &png).unwrap();
        png.len()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the dashboard tests save their screenshots: `RINGSTASH_ARTEFACTS_DIR` if set,
/// else `artefacts/` in the target directory (`target/artefacts`), each under
/// `dashboard/`.
pub fn artefacts_dir() -> PathBuf {
    let base = std::env::var_os("RINGSTASH_ARTEFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // CARGO_TARGET_TMPDIR is <target>/tmp.
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(&tmp).join("artefacts")
        });
    base.join("dashboard")
}
