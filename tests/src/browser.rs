//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`;
//! nothing is downloaded). The client is the few W3C WebDriver calls the console tests
//! need, over the harness's blocking HTTP client. Fields are found by their label and
//! buttons by their text, as people find them. Screenshots go to
//! `target/console-screenshots/`.

use crate::{bin_dir, wait_until, Running};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Where Debian puts Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page or a condition may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A Chromium session; the driver (and with it the browser) is killed when dropped.
pub struct Browser {
    driver_url: String,
    session: String,
    client: reqwest::blocking::Client,
    _driver: Running,
    _profile: tempfile::TempDir,
}

/// A page element (its WebDriver reference).
#[derive(Debug, Clone)]
pub struct Element(String);

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Quotes a string as an XPath literal.
pub fn xpath_literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else {
        format!("\"{s}\"")
    }
}

/// The folder the console screenshots are saved in (`target/console-screenshots`).
pub fn screenshot_dir() -> PathBuf {
    let target = bin_dir()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    target.join("console-screenshots")
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium with a fresh profile.
    /// Fails (not skips) with one line when the Debian packages are missing.
    pub fn start() -> Browser {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: install the Debian package {package} (.ci/run does: apt-get install -y chromium chromium-driver)"
            );
        }
        let mut driver = Running::spawn(Command::new(CHROMEDRIVER).arg("--port=0"));
        let line = driver.wait_for("started successfully on port", WAIT);
        let port: u16 = line
            .rsplit(' ')
            .next()
            .map(|p| p.trim_end_matches('.'))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("chromedriver printed no port: {line}"));
        let profile = tempfile::tempdir().expect("a temp folder for the browser profile");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("HTTP client");
        let driver_url = format!("http://127.0.0.1:{port}");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let resp: Value = client
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("chromedriver did not answer a new session: {e}"));
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start under chromedriver: {resp}"))
            .to_owned();
        Browser {
            driver_url,
            session,
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.driver_url, self.session);
        let mut req = self.client.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("WebDriver {path} failed: {e}"));
        if let Some(err) = resp["value"].get("error") {
            panic!("WebDriver {path}: {err}: {}", resp["value"]["message"]);
        }
        resp["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
    }

    fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// The current URL.
    pub fn url(&self) -> String {
        self.get("/url").as_str().unwrap_or_default().to_owned()
    }

    /// The elements matching an XPath.
    pub fn find_all(&self, xpath: &str) -> Vec<Element> {
        self.post("/elements", json!({"using": "xpath", "value": xpath}))
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|s| Element(s.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching an XPath, waiting for it to appear.
    pub fn find(&self, xpath: &str) -> Element {
        wait_until(&format!("an element {xpath}"), WAIT, || {
            self.find_all(xpath).into_iter().next()
        })
    }

    /// The form field whose label reads `label`.
    pub fn field(&self, label: &str) -> Element {
        self.find(&format!(
            "//*[@id=//label[normalize-space()={}]/@for]",
            xpath_literal(label)
        ))
    }

    /// The button whose text reads `text`.
    pub fn button(&self, text: &str) -> Element {
        self.find(&Self::button_xpath(text))
    }

    /// The XPath of a button by its text.
    pub fn button_xpath(text: &str) -> String {
        format!("//button[normalize-space()={}]", xpath_literal(text))
    }

    /// Whether a button with this text is on the page.
    pub fn has_button(&self, text: &str) -> bool {
        !self.find_all(&Self::button_xpath(text)).is_empty()
    }

    /// Clears the field labelled `label` and types `text` into it.
    pub fn fill(&self, label: &str, text: &str) {
        let f = self.field(label);
        self.post(&format!("/element/{}/clear", f.0), json!({}));
        self.post(&format!("/element/{}/value", f.0), json!({ "text": text }));
    }

    /// Clicks an element.
    pub fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}));
    }

    /// Clicks the button with this text.
    pub fn press(&self, text: &str) {
        let b = self.button(text);
        self.click(&b);
    }

    /// The visible text of an element.
    pub fn text(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// An attribute of an element.
    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.get(&format!("/element/{}/attribute/{name}", e.0))
            .as_str()
            .map(str::to_owned)
    }

    /// The visible text of the whole page.
    pub fn page_text(&self) -> String {
        // Read in the page itself, not through an element handle, which goes stale when
        // the page is replaced between finding <body> and reading its text.
        self.run(
            "return document.body ? document.body.innerText : '';",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the page's text contains `needle`; returns the text.
    pub fn wait_text(&self, needle: &str) -> String {
        wait_until(&format!("the page to say {needle:?}"), WAIT, || {
            let t = self.page_text();
            t.contains(needle).then_some(t)
        })
    }

    /// Waits until the URL's path is `path` (after the host).
    pub fn wait_path(&self, path: &str) {
        wait_until(&format!("the browser to be at {path}"), WAIT, || {
            let u = self.url();
            let p = u.splitn(4, '/').nth(3).map(|p| format!("/{p}"));
            (p.as_deref() == Some(path)).then_some(())
        });
    }

    /// Runs a script that calls its last argument with a result; returns the result.
    pub fn run_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
    }

    /// Sets the window size (a narrow screen, or a laptop).
    pub fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}));
    }

    /// Runs a script and returns its result.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
    }

    /// Saves a PNG of the whole page, `width` pixels wide, as
    /// `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        self.resize(width, 900);
        let height = self
            .run("return document.documentElement.scrollHeight;", json!([]))
            .as_u64()
            .unwrap_or(900)
            .clamp(300, 5000);
        self.resize(width, u32::try_from(height).unwrap_or(900) + 90);
        let png = self.get("/screenshot");
        self.resize(1280, 900);
        let bytes = B64
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("the screenshot file");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .client
            .delete(format!("{}/session/{}", self.driver_url, self.session))
            .send();
    }
}
