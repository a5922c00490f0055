//! In-process tests of the support-case pages: the list's order (overdue RMAs first) and
//! paging, the fleet's counts, role hiding and refusal, CSRF, a box not covered, the
//! refusals in words, a swap ending an RMA, and a box's report shown readably.

use super::tests::{Answer, H, SERIAL};
use crate::domain::case::{CaseEntry, CaseId, EntryKind};
use crate::domain::support::{self, CaseFilter, EntryRequest, OpenCaseRequest, RmaOpenRequest};
use crate::store::CaseChange;
use crate::tokens::{self, TokenRole};
use axum::http::StatusCode;

fn serial(model: &str, n: u32) -> String {
    let digits = format!("{}{n:06}", &model[3..]);
    let c = np_common::serial::luhn_check_digit(&digits);
    format!("{model}-{n:06}-{c}")
}

async fn open_case(h: &H, summary: &str) -> CaseId {
    support::open(
        &h.state,
        "setup",
        OpenCaseRequest {
            serial: SERIAL.into(),
            summary: summary.into(),
            channel: None,
            severity: None,
        },
    )
    .await
    .unwrap()
    .id
}

fn advance(h: &H, days: i64) {
    let mut t = h.clock.lock().unwrap();
    *t = t
        .checked_add(jiff::SignedDuration::from_hours(24 * days))
        .unwrap();
}

/// The case ids in the order the page lists them.
fn listed(a: &Answer) -> Vec<String> {
    a.text
        .split("<tr data-case=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn form(csrf: &str, fields: &[(&str, &str)]) -> String {
    let mut all = vec![("csrf", csrf)];
    all.extend_from_slice(fields);
    serde_urlencoded::to_string(all).unwrap()
}

/// Oldest case: RMA past due; then an open case; newest: resolved. The list shows the
/// overdue RMA first although it is the oldest; the fleet counts both open ones.
#[tokio::test]
async fn the_case_list_puts_overdue_rmas_first_and_pages_in_that_order() {
    let h = H::new().await;
    let old = open_case(&h, "fan is loud").await;
    support::open_rma(&h.state, "setup", old, RmaOpenRequest::default())
        .await
        .unwrap();
    advance(&h, 6);
    let open = open_case(&h, "update stuck").await;
    let done = open_case(&h, "asked about the manual").await;
    let resolve = EntryRequest {
        kind: "status".into(),
        text: String::new(),
        status: Some("resolved".into()),
    };
    support::add_entry(&h.state, "setup", done, resolve)
        .await
        .unwrap();

    let (cookie, _) = h.sign_in(&h.admin).await;
    let a = h.get("/console/cases", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(
        listed(&a),
        [old, open, done].map(|c| c.to_string()),
        "overdue first, then open, then the rest"
    );
    assert!(a.text.contains("class=\"badge bad\">overdue"), "the badge");
    let overdue = h.get("/console/cases?overdue=true", Some(&cookie)).await;
    assert_eq!(listed(&overdue), [old.to_string()]);
    let resolved = h.get("/console/cases?status=resolved", Some(&cookie)).await;
    assert_eq!(listed(&resolved), [done.to_string()]);
    let by_box = h
        .get(
            &format!("/console/cases?serial={}", serial("NR-2000", 9)),
            Some(&cookie),
        )
        .await;
    assert!(listed(&by_box).is_empty());
    let bad = h.get("/console/cases?overdue=maybe", Some(&cookie)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);

    // One case a page: the same order, page after page, and then no next page.
    let mut seen = Vec::new();
    let mut from = super::cases::Cursor::default();
    loop {
        let (cases, next) = super::cases::ordered_page(&h.state, &CaseFilter::default(), from, 1)
            .await
            .unwrap();
        seen.extend(cases.iter().map(|c| c.id));
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seen, [old, open, done]);

    let fleet = h.get("/console/", Some(&cookie)).await;
    assert!(
        fleet
            .text
            .contains("data-cases=\"open\"><a href=\"/console/cases\">2</a>"),
        "{}",
        fleet.text
    );
    assert!(fleet
        .text
        .contains("data-cases=\"overdue\"><a href=\"/console/cases?overdue=true\">1</a>"));
}

/// A release-role session sees no Cases link and no case page; its forged form (with a
/// valid CSRF token) is refused and changes nothing.
#[tokio::test]
async fn a_release_session_sees_no_case_controls_and_its_forged_post_is_refused() {
    let h = H::new().await;
    let id = open_case(&h, "disk full").await;
    let release = tokens::create(&h.data, TokenRole::Release, "rita", super::tests::t0()).unwrap();
    let (cookie, csrf) = h.sign_in(&release).await;
    let fleet = h.get("/console/", Some(&cookie)).await;
    assert!(!fleet.text.contains("href=\"/console/cases\""), "no link");
    assert!(
        fleet.text.contains("data-cases=\"open\">1</td>"),
        "the count"
    );
    for path in ["/console/cases".to_owned(), format!("/console/cases/{id}")] {
        let a = h.get(&path, Some(&cookie)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
        assert!(!a.text.contains("Add note"));
    }
    for (path, fields) in [
        (
            format!("/console/cases/{id}/note"),
            vec![("text", "forged")],
        ),
        (format!("/console/cases/{id}/rma"), vec![]),
        (format!("/console/cases/{id}/diagnostics"), vec![]),
        (
            format!("/console/devices/{SERIAL}/cases"),
            vec![("summary", "forged")],
        ),
    ] {
        let a = h.post(&path, Some(&cookie), &form(&csrf, &fields)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
    }
    let c = support::get(&h.state, id).await.unwrap();
    assert!(c.entries.is_empty() && c.rma.is_none(), "{c:?}");
    let all = support::list(&h.state, &CaseFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.cases.len(), 1, "no case was opened");

    // Staff see the controls.
    let staff = tokens::create(&h.data, TokenRole::Staff, "sam", super::tests::t0()).unwrap();
    let (scookie, _) = h.sign_in(&staff).await;
    let page = h.get(&format!("/console/cases/{id}"), Some(&scookie)).await;
    for control in [
        ">Add note</button>",
        ">Change status</button>",
        ">Open RMA</button>",
        ">Request diagnostics</button>",
        "href=\"/console/cases\"",
    ] {
        assert!(page.text.contains(control), "{control}");
    }
}

#[tokio::test]
async fn case_forms_need_the_csrf_token() {
    let h = H::new().await;
    let id = open_case(&h, "disk full").await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let path = format!("/console/cases/{id}/note");
    let a = h.post(&path, Some(&cookie), "text=hello").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.text.contains("security token"), "{}", a.text);
    let a = h.post(&path, Some(&cookie), "text=hello&csrf=forged").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/cases"),
            Some(&cookie),
            "summary=x",
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(support::get(&h.state, id).await.unwrap().entries.is_empty());

    let a = h
        .post(
            &path,
            Some(&cookie),
            &form(&csrf, &[("text", "called back")]),
        )
        .await;
    assert_eq!(
        (a.status, a.location()),
        (
            StatusCode::SEE_OTHER,
            format!("/console/cases/{id}").as_str()
        )
    );
    let page = h.get(&format!("/console/cases/{id}"), Some(&cookie)).await;
    assert!(page.text.contains("Note added to case"), "the notice");
    assert!(page.text.contains("called back"));
    assert!(page.text.contains("in service hours"), "the first response");
    // A GET on a form's address changes nothing and goes to the case.
    let a = h.get(&path, Some(&cookie)).await;
    assert_eq!(a.location(), format!("/console/cases/{id}"));
}

/// A box whose coverage ended shows why no case can be opened (its coverage end, and that
/// the reinstatement comes first), has no "Open case" button, and a posted form is refused
/// in the same words.
#[tokio::test]
async fn a_box_not_covered_shows_the_refusal_in_words() {
    let h = H::new().await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let page = h
        .get(&format!("/console/devices/{SERIAL}"), Some(&cookie))
        .await;
    assert!(
        page.text.contains(">Open case</button>"),
        "covered: the form"
    );
    assert!(page.text.contains("No support cases."));

    *h.clock.lock().unwrap() = "2027-07-01T10:00:00Z".parse().unwrap();
    let (cookie, csrf2) = h.sign_in(&h.admin).await;
    assert_ne!(csrf, csrf2);
    let end = {
        let s = np_common::Serial::parse(SERIAL).unwrap();
        h.state
            .store
            .device(&s)
            .await
            .unwrap()
            .unwrap()
            .coverage_end
    };
    let page = h
        .get(&format!("/console/devices/{SERIAL}"), Some(&cookie))
        .await;
    assert!(!page.text.contains(">Open case</button>"), "no form");
    let why = page.text.split("id=\"no-support\">").nth(1).unwrap();
    assert!(
        why.contains(&format!("coverage ended on {end}")) && why.contains("reinstatement"),
        "{why}"
    );
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/cases"),
            Some(&cookie),
            &form(&csrf2, &[("summary", "no boot"), ("channel", "email")]),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let notice = a.text.split("role=\"alert\">").nth(1).unwrap();
    assert!(
        notice.contains(&format!("coverage ended on {end}"))
            && notice.contains("confirmed reinstatement")
            && !notice.contains("\"reinstate\""),
        "the console's words, not the API body's: {notice}"
    );
    let all = support::list(&h.state, &CaseFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(all.cases.is_empty());
}

/// The refusals of the case forms, in words on the case's page with the API's status:
/// a status change the machine refuses, a swap to a lower tier, an unknown exclusion.
/// Then a swap to a higher model ends the RMA and resolves the case.
#[tokio::test]
async fn case_refusals_are_shown_in_words_and_a_swap_resolves_the_case() {
    let h = H::new().await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let a = h
        .post(
            &format!("/console/devices/{SERIAL}/cases"),
            Some(&cookie),
            &form(
                &csrf,
                &[
                    ("summary", "no boot"),
                    ("channel", "email"),
                    ("severity", "high"),
                ],
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    let to = a.location().to_owned();
    let id = CaseId::parse(to.trim_start_matches("/console/cases/")).unwrap();
    let page = h.get(&to, Some(&cookie)).await;
    assert!(page
        .text
        .contains(&format!("Case {id} opened for {SERIAL}")));
    assert!(page.text.contains("id=\"case-channel\">email</dd>"));

    let post = |path: &'static str, fields: Vec<(&'static str, &'static str)>| {
        let body = form(&csrf, &fields);
        let cookie = cookie.clone();
        let url = format!("/console/cases/{id}/{path}");
        let h = &h;
        async move { h.post(&url, Some(&cookie), &body).await }
    };
    let a = post("status", vec![("status", "open")]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.text
            .contains("cannot go from open to open: it is there already"),
        "{}",
        a.text
    );
    let a = post("end", vec![("outcome", "repaired")]).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.text.contains("has no RMA; open one first"), "{}", a.text);

    let a = post("rma", vec![("note", "shipping label sent")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let page = h.get(&to, Some(&cookie)).await;
    assert!(page.text.contains("RMA opened on case"), "{}", page.text);
    assert!(page.text.contains("id=\"rma-due\">"));
    assert!(page.text.contains(">Parts short</button>"));

    let a = post("shortage", vec![("shortage", "true")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let page = h.get(&to, Some(&cookie)).await;
    assert!(page.text.contains("the clock is stopped"));
    let a = post("shortage", vec![("shortage", "false")]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);

    let lower: &'static str = Box::leak(serial("NR-1000", 9).into_boxed_str());
    let a = post(
        "end",
        vec![("outcome", "swapped"), ("replacement_serial", lower)],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert!(
        a.text.contains("same or a higher tier"),
        "names the rule: {}",
        a.text
    );
    let a = post("end", vec![("outcome", "swapped")]).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.text.contains("fill in &#34;Replacement serial&#34;")
            || a.text.contains("fill in &quot;Replacement serial&quot;"),
        "{}",
        a.text
    );
    let a = post(
        "end",
        vec![("outcome", "not_covered"), ("exclusion", "acts_of_cats")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        a.text.contains("misuse_or_wear") || a.text.contains("Misuse"),
        "{}",
        a.text
    );
    assert!(support::get(&h.state, id)
        .await
        .unwrap()
        .rma
        .unwrap()
        .outcome
        .is_none());

    let higher: &'static str = Box::leak(serial("NR-3000", 9).into_boxed_str());
    let a = post(
        "end",
        vec![
            ("outcome", "swapped"),
            ("replacement_serial", higher),
            ("note", "board failed"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    let page = h.get(&to, Some(&cookie)).await;
    assert!(
        page.text.contains(&format!("swapped for {higher}")),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"case-status\">resolved</dd>"));
    assert!(!page.text.contains(">End RMA</button>"));
    let new = h
        .get(&format!("/console/devices/{higher}"), Some(&cookie))
        .await;
    assert_eq!(new.status, StatusCode::OK);
    assert!(new
        .text
        .contains(&format!("replaces <a href=\"/console/devices/{SERIAL}\"")));
}

/// A box's diagnostics report is shown pretty-printed in a `<pre>`, escaped; a request
/// for a box without a device key is refused in words.
#[tokio::test]
async fn a_diagnostics_report_is_shown_readably_and_escaped() {
    let h = H::new().await;
    let id = open_case(&h, "slow").await;
    let (cookie, csrf) = h.sign_in(&h.admin).await;
    let a = h
        .post(
            &format!("/console/cases/{id}/diagnostics"),
            Some(&cookie),
            &form(&csrf, &[]),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(
        a.text.contains("has no device key registered"),
        "{}",
        a.text
    );

    let report = r#"{"health":"<b>ok</b>","free_bytes":1024}"#;
    let change = CaseChange {
        actor: "device:x",
        action: "diagnostics_report",
        device_action: "diagnostics_report",
        at: super::tests::t0(),
    };
    h.state
        .store
        .mutate_case(id, &[], &change, |c, _| {
            c.push(CaseEntry {
                at: super::tests::t0(),
                by: "device:x".into(),
                kind: EntryKind::Diagnostics,
                text: report.into(),
                status: None,
            });
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    let page = h.get(&format!("/console/cases/{id}"), Some(&cookie)).await;
    let pre = page
        .text
        .split("<pre class=\"report\">")
        .nth(1)
        .and_then(|p| p.split("</pre>").next())
        .unwrap();
    assert!(pre.contains("\n  "), "pretty-printed: {pre}");
    assert!(pre.contains("&#60;b&#62;ok&#60;/b&#62;"), "escaped: {pre}");
    assert!(!page.text.contains("<b>ok</b>"));
}
