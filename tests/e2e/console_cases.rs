//! The support cases in the staff console, in a real browser (headless Chromium over
//! WebDriver) against the real `np-server`: open a case from a box's page, find it in the
//! case list, add a note, open an RMA, end it with a swap to a higher model (the case is
//! resolved, the replacement has its page), and ask the replacement for diagnostics.
//! Fields are found by their labels, buttons by their text; the case list and a case's
//! page are saved under `target/console-screenshots/`.

#![allow(clippy::unwrap_used)]

use jiff::ToSpan as _;
use np_common::SecretKey;
use np_tests::browser::{xpath_literal, Browser};
use np_tests::server::TestServer;
use np_tests::{bin, run};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// A serial with a correct check digit.
fn serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    let c = np_common::serial::luhn_check_digit(&digits);
    format!("{model}-{n:06}-{c}")
}

/// Chooses the option `value` of the list labelled `label`.
fn choose(b: &Browser, label: &str, value: &str) {
    let option = b.find(&format!(
        "//select[@id=//label[normalize-space()={}]/@for]/option[@value={}]",
        xpath_literal(label),
        xpath_literal(value)
    ));
    b.click(&option);
}

/// Posts the box's signed diagnostics report for `case`, as its agent does.
fn post_report(
    srv: &TestServer,
    serial: &str,
    key: &SecretKey,
    case: &str,
    asked: jiff::Timestamp,
) {
    let report = np_common::device_docs::Diagnostics {
        serial: np_common::Serial::parse(serial).unwrap(),
        case: case.to_owned(),
        requested_at: asked,
        at: jiff::Timestamp::now(),
        agent_version: "0.1.0".into(),
        status: json!({"phase": "idle", "version": "5.1.0"}),
        events: vec![json!({"event": "boot", "slot": "a"})],
        slots: np_common::device_docs::DiagnosticsSlots {
            active: np_common::device_docs::SlotName::A,
            booted: Some(np_common::device_docs::SlotName::A),
            a: Some(np_common::Version::parse("5.1.0").unwrap()),
            b: None,
        },
        state_free_bytes: Some(1_048_576),
        health: Some(np_common::device_docs::DiagnosticsHealth {
            exit_code: Some(0),
            output: "<ok> disk and network fine".into(),
        }),
        truncated: false,
    };
    let env = np_common::device_docs::sign_device(&report, key);
    let path = "/api/v1/device/diagnostics";
    let bytes = serde_json::to_vec(&env).unwrap();
    let mut req = srv.client().post(format!("{}{path}", srv.url));
    for (name, value) in np_tests::device_headers(key, serial, "POST", path, &bytes) {
        req = req.header(name, value);
    }
    let resp = req
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.text().unwrap_or_default());
}

/// The id of the case whose page is open (from its heading).
fn pending_case(b: &Browser) -> String {
    let h1 = b.text(&b.find("//h1"));
    h1.trim_start_matches("Case ").to_owned()
}

#[test]
fn console_cases_open_note_rma_swap_and_diagnostics() {
    let srv = TestServer::start();
    let failed = serial("NR-2000", 31);
    let replacement = serial("NR-3000", 32);
    let purchase = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .checked_sub(100.days())
        .unwrap();
    let key = SecretKey::from_seed(&[31; 32]);
    let (status, d) = srv.post_json(
        "/api/v1/devices",
        json!({"serial": failed, "purchase_date": purchase.to_string(), "customer": "Acme Logistics",
               "device_key": key.public_key().to_base64()}),
    );
    assert_eq!(status, 201, "{d}");
    let console = |path: &str| format!("{}/console{path}", srv.url);

    let b = Browser::start();
    b.goto(&console("/sign-in"));
    b.fill("Token", &srv.admin_token);
    b.press("Sign in");
    b.wait_path("/console/");
    b.wait_text("Open support cases");

    // Open a case from the box's page.
    b.goto(&console(&format!("/devices/{failed}")));
    b.find("//h2[normalize-space()='Support cases']");
    b.wait_text("No support cases.");
    b.fill("Summary", "the box reboots every night");
    choose(&b, "Channel", "email");
    choose(&b, "Severity", "high");
    b.press("Open case");
    let opened = b.wait_text(&format!("opened for {failed}"));
    let id = opened
        .split("Case ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap()
        .to_owned();
    b.wait_path(&format!("/console/cases/{id}"));
    let (status, c) = srv.get_json(&format!("/api/v1/cases/{id}"));
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (&c["channel"], &c["severity"], &c["status"]),
        (&json!("email"), &json!("high"), &json!("open"))
    );

    // The case list shows it; its link leads to the case.
    let nav = b.find("//nav//a[normalize-space()='Cases']");
    b.click(&nav);
    b.wait_path("/console/cases");
    b.wait_text("the box reboots every night");
    b.screenshot("cases", 1280);
    let link = b.find(&format!("//a[normalize-space()={}]", xpath_literal(&id)));
    b.click(&link);
    b.find(&format!("//h1[normalize-space()='Case {id}']"));

    // A note: the first response, counted in service hours.
    b.fill("Note", "asked the customer for the power log");
    b.press("Add note");
    b.wait_text("Note added to case");
    b.wait_text("asked the customer for the power log");
    let first = b.text(&b.find("//dd[@id='case-first-response']"));
    assert!(first.contains("in service hours"), "{first}");

    // An RMA, due in five days.
    b.fill("RMA note (optional)", "label sent");
    b.press("Open RMA");
    b.wait_text("RMA opened on case");
    let (_, c) = srv.get_json(&format!("/api/v1/cases/{id}"));
    assert_eq!(c["status"], "rma");
    assert_eq!(c["rma"]["outcome"], json!(null));
    let due = b.text(&b.find("//dd[@id='rma-due']"));
    let due_api: jiff::Timestamp = c["rma"]["due"].as_str().unwrap().parse().unwrap();
    assert_eq!(due, due_api.strftime("%Y-%m-%d %H:%M UTC").to_string());
    b.screenshot("case-rma", 1280);

    // Ended as swapped for a higher model: the case is resolved, the replacement has the
    // coverage and its own page.
    let new_key = SecretKey::from_seed(&[32; 32]);
    choose(&b, "Outcome", "swapped");
    b.fill("Replacement serial", &replacement);
    b.fill(
        "Replacement device key (optional, base64)",
        &new_key.public_key().to_base64(),
    );
    b.fill("Ending note (optional)", "main board failed");
    b.press("End RMA");
    b.wait_text("The case is resolved");
    assert_eq!(b.text(&b.find("//dd[@id='case-status']")), "resolved");
    assert!(!b.has_button("End RMA"));
    let (_, c) = srv.get_json(&format!("/api/v1/cases/{id}"));
    assert_eq!(
        (
            &c["status"],
            &c["rma"]["outcome"],
            &c["rma"]["replacement_serial"]
        ),
        (&json!("resolved"), &json!("swapped"), &json!(replacement))
    );
    b.screenshot("case", 1280);
    let link = b.find(&format!(
        "//dd[@id='rma-replacement']/a[normalize-space()={}]",
        xpath_literal(&replacement)
    ));
    b.click(&link);
    b.find(&format!(
        "//h1[normalize-space()={}]",
        xpath_literal(&replacement)
    ));
    assert_eq!(b.text(&b.find("//dd[@id='model']")), "NR-3000");
    let (_, old) = srv.get_json(&format!("/api/v1/devices/{failed}"));
    assert_eq!(
        (&old["status"], &old["replaced_by"]),
        (&json!("replaced"), &json!(replacement))
    );

    // The replacement gets its own case, and its box is asked for diagnostics.
    b.fill("Summary", "check the replacement after the swap");
    b.press("Open case");
    b.wait_text(&format!("opened for {replacement}"));
    b.press("Request diagnostics");
    b.wait_text("Diagnostics requested:");
    let pending = b.text(&b.find("//dd[@id='diagnostics-pending']"));
    assert!(
        pending.contains("admin") && pending.contains("next check-in"),
        "{pending}"
    );
    let (_, c) = srv.get_json(&format!("/api/v1/cases/{}", pending_case(&b)));
    assert_eq!(c["diagnostics_pending"]["requested_by"], "admin", "{c}");
    let asked: jiff::Timestamp = c["diagnostics_pending"]["issued_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let case_url = b.url();

    b.goto(&console(&format!("/devices/{replacement}")));
    let on_box = b.text(&b.find("//dd[@id='pending-diagnostics']"));
    assert!(on_box.contains("next check-in"), "{on_box}");
    b.screenshot("device-with-cases", 1280);

    // The box's signed report (as its agent posts it) shows on the case, pretty-printed
    // and escaped.
    let second = case_url.rsplit('/').next().unwrap().to_owned();
    post_report(&srv, &replacement, &new_key, &second, asked);
    b.goto(&case_url);
    let report = b.text(&b.find("//pre[@class='report']"));
    assert!(
        report.contains("\"state_free_bytes\": 1048576")
            && report.contains("<ok> disk and network fine"),
        "{report}"
    );
    b.screenshot("case-diagnostics", 1280);

    // The fleet counts the replacement's case as open.
    b.goto(&console("/"));
    let open = b.find("//td[@data-cases='open']");
    assert_eq!(b.text(&open), "1");

    // A release-role session sees no Cases link and no case controls, and its forged
    // form (with its own valid CSRF token) is refused and changes nothing.
    let out = run(
        Command::new(bin("np-server"))
            .args([
                "token", "create", "--role", "release", "--name", "rita", "--data",
            ])
            .arg(&srv.data_dir),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, 0, "token create: {}", out.stderr);
    b.press("Sign out");
    b.wait_path("/console/sign-in");
    b.fill("Token", out.stdout.trim());
    b.press("Sign in");
    b.wait_path("/console/");
    b.wait_text("rita (release)");
    assert!(b.find_all("//nav//a[normalize-space()='Cases']").is_empty());
    let input = b.find("//form[@action='/console/sign-out']/input[@name='csrf']");
    let token = b.attr(&input, "value").unwrap();
    b.goto(&case_url);
    b.wait_text("Forbidden");
    assert!(!b.has_button("Add note") && !b.has_button("Request diagnostics"));
    let status = b.run_async(
        "const [path, fields, done] = arguments;
         fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'})
           .then(r => done(r.status), e => done(String(e)));",
        json!([format!("/console/cases/{second}/note"), {"csrf": token, "text": "forged"}]),
    );
    assert_eq!(status, Value::from(403));
    let (_, c) = srv.get_json(&format!("/api/v1/cases/{second}"));
    assert!(
        !c["entries"].to_string().contains("forged"),
        "{}",
        c["entries"]
    );
}
