//! The staff console in a real browser: headless Chromium (Debian's, driven over
//! WebDriver) against the real `np-server` with boxes, check-ins and a release. Fields
//! are found by their labels, buttons by their text. Every page is saved as a screenshot
//! under `target/console-screenshots/`.

#![allow(clippy::unwrap_used)]

use jiff::civil::Date;
use jiff::ToSpan as _;
use np_common::warranty::{add_months, billable_months, days_between};
use np_common::SecretKey;
use np_tests::browser::Browser;
use np_tests::server::TestServer;
use np_tests::{bin, run};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// A serial with a correct check digit: `NR-2000` and 17 give `NR-2000-000017-C`.
fn serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    let c = np_common::serial::luhn_check_digit(&digits);
    format!("{model}-{n:06}-{c}")
}

fn today() -> Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// A server with five boxes, three of which checked in, and release 5.3.0 for NR-2000.
struct Fleet {
    srv: TestServer,
    staff_token: String,
    /// Covered, checked in with 5.1.0.
    covered: String,
    /// Coverage ended about 35 days ago.
    lapsed: String,
    _tmp: tempfile::TempDir,
}

impl Fleet {
    fn start() -> Fleet {
        let srv = TestServer::start();
        let out = run(
            Command::new(bin("np-server"))
                .args([
                    "token", "create", "--role", "staff", "--name", "sam", "--data",
                ])
                .arg(&srv.data_dir),
            Duration::from_secs(30),
        );
        assert_eq!(out.code, 0, "token create: {}", out.stderr);
        let staff_token = out.stdout.trim().to_owned();
        let t = today();
        let boxes = [
            (serial("NR-2000", 1), 100, "Acme Logistics", Some("5.1.0")),
            (serial("NR-2000", 2), 200, "Acme Logistics", Some("5.1.0")),
            (serial("NR-3000", 3), 300, "Globex", Some("5.2.0")),
            (serial("NR-2000", 4), 400, "Initech", None),
            (serial("NR-1000", 5), 345, "Umbrella", None),
        ];
        for (i, (s, age, customer, version)) in boxes.iter().enumerate() {
            let key = SecretKey::from_seed(&[u8::try_from(i).unwrap() + 1; 32]);
            let purchase = t.checked_sub(age.days()).unwrap();
            let (status, d) = srv.post_json(
                "/api/v1/devices",
                json!({"serial": s, "purchase_date": purchase.to_string(), "customer": customer,
                       "device_key": key.public_key().to_base64()}),
            );
            assert_eq!(status, 201, "{d}");
            if let Some(v) = version {
                let mut body = json!({"version": v, "slot": "a", "state": "idle", "nonce": format!("{:016x}", i + 1)});
                if i == 1 {
                    body["last_result"] = json!({"version": "5.3.0", "outcome": "rolled_back",
                        "detail": "health check failed", "at": jiff::Timestamp::now()});
                }
                check_in(&srv, s, &key, &body);
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("n-reporter-5.3.0.img");
        std::fs::write(&image, vec![7u8; 4096]).unwrap();
        let (status, blob) = srv.put_blob(&image);
        assert_eq!(status, 201, "{blob}");
        let (status, rel) = srv.post_json(
            "/api/v1/releases",
            json!({"version": "5.3.0", "security_version": 3, "models": ["NR-2000"],
                   "image": {"sha256": blob["sha256"]}, "notes": "console test", "rollout_percent": 20}),
        );
        assert_eq!(status, 201, "{rel}");
        Fleet {
            srv,
            staff_token,
            covered: boxes[0].0.clone(),
            lapsed: boxes[3].0.clone(),
            _tmp: tmp,
        }
    }

    fn console(&self, path: &str) -> String {
        format!("{}/console{path}", self.srv.url)
    }

    fn device(&self, serial: &str) -> Value {
        let (status, d) = self.srv.get_json(&format!("/api/v1/devices/{serial}"));
        assert_eq!(status, 200, "{d}");
        d
    }

    fn release(&self) -> Value {
        let (status, r) = self.srv.get_json("/api/v1/releases/5.3.0");
        assert_eq!(status, 200, "{r}");
        r
    }

    fn sign_in(&self, b: &Browser, token: &str) {
        b.goto(&self.console("/sign-in"));
        b.fill("Token", token);
        b.press("Sign in");
        b.wait_text("Sign out");
        b.wait_path("/console/");
    }
}

/// A signed device check-in.
fn check_in(srv: &TestServer, serial: &str, key: &SecretKey, body: &Value) {
    let path = "/api/v1/device/check-in";
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = srv.client().post(format!("{}{path}", srv.url));
    for (name, value) in np_tests::device_headers(key, serial, "POST", path, &bytes) {
        req = req.header(name, value);
    }
    let resp = req
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().unwrap_or_default()
    );
}

/// Posts a form from the page (same origin, with the session's cookie); returns the status.
fn post_form(b: &Browser, path: &str, fields: Value) -> u64 {
    b.run_async(
        "const [path, fields, done] = arguments;
         fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'})
           .then(r => done(r.status), e => done(String(e)));",
        json!([path, fields]),
    )
    .as_u64()
    .unwrap_or(0)
}

/// The session's CSRF token, from the sign-out form.
fn csrf(b: &Browser) -> String {
    let input = b.find("//form[@action='/console/sign-out']/input[@name='csrf']");
    b.attr(&input, "value").unwrap()
}

#[test]
fn console_search_open_extend_reinstate_and_the_fleet_chart() {
    let fleet = Fleet::start();
    let b = Browser::start();

    // No session: the console sends the browser to sign in.
    b.goto(&fleet.console("/devices"));
    b.wait_path("/console/sign-in");
    b.field("Token");
    b.screenshot("sign-in", 1280);
    b.fill("Token", "not-a-token");
    b.press("Sign in");
    b.wait_text("That token is not valid");

    fleet.sign_in(&b, &fleet.srv.admin_token);

    // The fleet chart shows what the API knows: boxes per running version.
    let (status, list) = fleet.srv.get_json("/api/v1/devices");
    assert_eq!(status, 200);
    let devices = list["devices"].as_array().unwrap();
    let running = |v: &str| devices.iter().filter(|d| d["version"] == v).count();
    assert_eq!((running("5.1.0"), running("5.2.0")), (2, 1));
    for (version, n) in [("5.1.0", 2), ("5.2.0", 1), ("not reported", 2)] {
        let bar = b.find(&format!("//*[name()='g'][@data-version='{version}']"));
        assert_eq!(
            b.attr(&bar, "data-count").as_deref(),
            Some(n.to_string().as_str())
        );
        let count = b.find(&format!(
            "//*[name()='g'][@data-version='{version}']/*[name()='text'][@class='count']"
        ));
        assert_eq!(b.text(&count), n.to_string(), "the bar of {version}");
    }
    let t = today();
    for days in [30, 60, 90] {
        let limit = t.checked_add(days.days()).unwrap();
        let want = devices
            .iter()
            .filter(|d| {
                let end: Date = d["coverage_end"].as_str().unwrap().parse().unwrap();
                end > t && end <= limit
            })
            .count();
        let cell = b.find(&format!("//td[@data-within='{days}']"));
        assert_eq!(b.text(&cell), want.to_string(), "ending within {days} days");
    }
    let active = b.find("//td[@data-status='active']");
    assert_eq!(b.text(&active), "5");
    b.wait_text("rolled back");
    b.screenshot("fleet", 1280);

    // Search a serial, open the box.
    b.goto(&fleet.console("/devices"));
    b.fill("Search", &fleet.covered[..12]);
    b.press("Find");
    // The answer's page, not the list it replaces (which also names Acme Logistics).
    b.wait_path(&format!(
        "/console/devices?search={}&model=&status=&ends=",
        &fleet.covered[..12]
    ));
    b.wait_text("Acme Logistics");
    assert!(!b.page_text().contains("Globex"), "the search filters");
    b.screenshot("devices", 1280);
    let link = b.find(&format!("//a[normalize-space()='{}']", fleet.covered));
    b.click(&link);
    b.find(&format!("//h1[normalize-space()='{}']", fleet.covered));

    // Extend by 6 months: the new end on the page and in the audit log.
    let before: Date = fleet.device(&fleet.covered)["coverage_end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after = add_months(before, 6).unwrap();
    b.fill("Months", "6");
    b.press("Extend");
    b.wait_text(&format!("now ends on {after}"));
    let end = b.find("//dd[@id='coverage-end']");
    assert_eq!(b.text(&end), after.to_string());
    assert_eq!(
        fleet.device(&fleet.covered)["coverage_end"],
        after.to_string()
    );
    b.wait_text(&format!("coverage_end: {before} → {after}"));
    b.screenshot("device", 1280);
    b.screenshot("device-narrow", 390);
    b.goto(&fleet.console(&format!("/audit?serial={}", fleet.covered)));
    b.wait_text(&format!("coverage_end: {before} → {after}"));
    b.wait_text("admin");
    b.screenshot("audit", 1280);

    // A lapsed box: the gap in days and billable months, then the confirmed reinstatement.
    b.goto(&fleet.console(&format!("/devices/{}", fleet.lapsed)));
    let ended: Date = fleet.device(&fleet.lapsed)["coverage_end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let t = today();
    b.fill("Months", "12");
    b.press("Extend");
    let gap = b.find("//p[@id='gap']");
    let words = b.text(&gap);
    assert!(
        words.contains(&format!("{} days", days_between(ended, t)))
            && words.contains(&format!("{} billable months", billable_months(ended, t))),
        "{words}"
    );
    assert_eq!(
        fleet.device(&fleet.lapsed)["coverage_end"],
        ended.to_string(),
        "nothing changes before the confirmation"
    );
    b.screenshot("device-lapsed", 1280);
    b.press("Confirm reinstatement");
    let new_end = add_months(t, 12).unwrap();
    b.wait_text(&format!("now ends on {new_end}"));
    let terms = fleet.device(&fleet.lapsed)["terms"].clone();
    assert!(
        terms
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["kind"] == "reinstatement"),
        "{terms}"
    );

    // A swap to a lower tier says which rule failed.
    b.goto(&fleet.console(&format!("/devices/{}", fleet.covered)));
    b.fill("New serial", &serial("NR-1000", 9));
    b.fill("Swap reason", "RMA 17");
    b.press("Swap");
    b.wait_text("a swap must go to the same or a higher tier");

    // Releases: the admin sees the rollout controls; pausing goes through the API's rules.
    b.goto(&fleet.console("/releases"));
    b.wait_text("rolling out to 20%");
    assert!(b.has_button("Set rollout") && b.has_button("Yank"));
    b.press("Pause");
    b.wait_text("Release 5.3.0 is paused");
    assert_eq!(fleet.release()["paused"], true);
    b.screenshot("releases", 1280);

    // A form posted without its CSRF token is refused, and changes nothing.
    let end_before = fleet.device(&fleet.covered)["coverage_end"].clone();
    let path = format!("/console/devices/{}/extend", fleet.covered);
    assert_eq!(post_form(&b, &path, json!({"months": "6"})), 403);
    assert_eq!(
        post_form(&b, &path, json!({"months": "6", "csrf": "forged"})),
        403
    );
    assert_eq!(fleet.device(&fleet.covered)["coverage_end"], end_before);

    // Signed out: back to sign-in, and the old cookie opens nothing.
    b.goto(&fleet.console("/"));
    b.press("Sign out");
    b.wait_path("/console/sign-in");
    b.goto(&fleet.console("/devices"));
    b.wait_path("/console/sign-in");
}

#[test]
fn console_staff_role_sees_no_release_controls_and_its_forged_post_is_refused() {
    let fleet = Fleet::start();
    let b = Browser::start();
    fleet.sign_in(&b, &fleet.staff_token);
    b.goto(&fleet.console("/releases"));
    b.wait_text("rolling out to 20%");
    for control in ["Set rollout", "Pause", "Resume", "Yank"] {
        assert!(!b.has_button(control), "a staff session sees {control:?}");
    }
    b.screenshot("releases-staff", 1280);
    // A forged POST with a valid CSRF token is still refused by the role.
    let token = csrf(&b);
    let status = post_form(
        &b,
        "/console/releases/5.3.0",
        json!({"csrf": token, "op": "yank"}),
    );
    assert_eq!(status, 403);
    let r = fleet.release();
    assert_eq!(
        (r["yanked"].as_bool(), r["paused"].as_bool()),
        (Some(false), Some(false))
    );
    // Staff may manage devices: the device page shows the Extend control.
    b.goto(&fleet.console(&format!("/devices/{}", fleet.covered)));
    b.button("Extend");
}

/// One customer name without spaces (pasted from a spreadsheet) must not push the other
/// columns of the devices and audit tables off a laptop screen or break serials apart.
#[test]
fn console_tables_stay_readable_with_a_long_customer_name() {
    let fleet = Fleet::start();
    let long = serial("NR-2000", 77);
    let purchase = today().checked_sub(30.days()).unwrap();
    let (status, d) = fleet.srv.post_json(
        "/api/v1/devices",
        json!({"serial": long, "purchase_date": purchase.to_string(), "customer": "x".repeat(200)}),
    );
    assert_eq!(status, 201, "{d}");
    let b = Browser::start();
    b.resize(1280, 900);
    fleet.sign_in(&b, &fleet.staff_token);
    for page in ["/devices", "/audit"] {
        b.goto(&fleet.console(page));
        b.wait_text(&long);
        let fit = b.run(
            "const t = document.querySelector('table');
             const serial = [...t.querySelectorAll('td')].find(td => td.textContent.trim() === arguments[0]);
             const text = document.createRange();
             text.selectNodeContents(serial);
             const lines = text.getBoundingClientRect().height / parseFloat(getComputedStyle(serial).lineHeight);
             return [t.scrollWidth, t.parentElement.clientWidth, Math.round(lines * 10) / 10];",
            json!([long]),
        );
        let (table, room, lines) = (
            fit[0].as_f64().unwrap(),
            fit[1].as_f64().unwrap(),
            fit[2].as_f64().unwrap(),
        );
        assert!(
            table <= room,
            "{page}: the table is {table} px wide in {room} px"
        );
        assert!(lines <= 1.9, "{page}: the serial takes {lines} lines");
        b.screenshot(&format!("long-customer{}", page.replace('/', "-")), 1280);
    }
}
