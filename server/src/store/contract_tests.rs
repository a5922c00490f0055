//! The store contract: the same test functions run against the sled store and against
//! PostgreSQL (each test on a fresh database, created with a random name and dropped at
//! the end). PostgreSQL is `NP_TEST_PG_URL` (a URL of a role that may create databases),
//! or else `postgres://np_test:np_test@127.0.0.1:5432/postgres` (the role `.ci/run` makes).
//! Without a reachable server the PostgreSQL half is skipped with a message, except in CI
//! (`CI=true`) or when `NP_TEST_PG_URL` is set, where it fails saying why.

use super::*;
use crate::domain::device::DeviceRecord;
use crate::domain::guard::Mark;
use np_common::api::EventKind;
use np_common::warranty::initial_term;
use np_common::{SecretKey, Serial};

pub(crate) use testdb::TestDb;

/// Fresh PostgreSQL databases for tests (also used by other modules' tests).
pub(crate) mod testdb {
    use tokio_postgres::NoTls;

    const DEFAULT_URL: &str = "postgres://np_test:np_test@127.0.0.1:5432/postgres";

    /// A database made for one test, dropped when this is dropped.
    pub(crate) struct TestDb {
        admin_url: String,
        name: String,
        /// The URL of the fresh database.
        pub url: String,
    }

    async fn admin(url: &str) -> Result<tokio_postgres::Client, String> {
        let connect = tokio_postgres::connect(url, NoTls);
        let (client, conn) = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
            .await
            .map_err(|_| "no answer within 5 s".to_owned())?
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    }

    impl TestDb {
        /// A fresh database, or `None` (after saying so) when no PostgreSQL is reachable
        /// outside CI. In CI, or when `NP_TEST_PG_URL` is set, an unreachable server fails
        /// the test.
        pub(crate) async fn create() -> Option<TestDb> {
            let explicit = std::env::var("NP_TEST_PG_URL").ok();
            let admin_url = explicit.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
            let client = match admin(&admin_url).await {
                Ok(c) => c,
                Err(e) => {
                    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
                    assert!(
                        !ci && explicit.is_none(),
                        "PostgreSQL is not reachable at {} ({e}): the PostgreSQL store tests must run here (.ci/run installs and starts it)",
                        redact(&admin_url)
                    );
                    eprintln!(
                        "skipped: no PostgreSQL at {} ({e}); set NP_TEST_PG_URL or run .ci/run",
                        redact(&admin_url)
                    );
                    return None;
                }
            };
            let mut raw = [0u8; 8];
            getrandom::getrandom(&mut raw).expect("random bytes");
            let name = format!("np_test_{}", hex::encode(raw));
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("CREATE DATABASE (the test role needs CREATEDB)");
            let mut config: tokio_postgres::Config = admin_url.parse().expect("a valid URL");
            config.dbname(&name);
            let url = to_url(&config, &admin_url, &name);
            Some(TestDb {
                admin_url,
                name,
                url,
            })
        }
    }

    /// The URL `admin_url` with its database replaced by `name`.
    fn to_url(_config: &tokio_postgres::Config, admin_url: &str, name: &str) -> String {
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (admin_url, None),
        };
        let cut = base.rfind('/').filter(|i| *i > "postgres://".len());
        let mut url = match cut {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => format!("{base}/{name}"),
        };
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    fn redact(url: &str) -> String {
        match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
            _ => url.to_owned(),
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let (url, name) = (self.admin_url.clone(), self.name.clone());
            // A fresh runtime on its own thread: Drop may run inside another runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let c = admin(&url).await.ok()?;
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .ok()
                })
            })
            .join();
        }
    }
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub(crate) fn record(serial: &Serial, key: &SecretKey) -> DeviceRecord {
    let p = jiff::civil::date(2026, 1, 1);
    DeviceRecord::new(
        serial.clone(),
        serial.model(),
        "ACME".into(),
        p,
        vec![initial_term(p).unwrap()],
        None,
        key,
        t("2026-01-02T00:00:00Z"),
    )
}

fn release_record(version: &str) -> ReleaseRecord {
    let release: np_common::docs::Release = serde_json::from_value(serde_json::json!({
        "product": "np-os",
        "version": version,
        "security_version": 1,
        "models": ["NR-2000"],
        "channel": "stable",
        "released_at": "2026-01-01T00:00:00Z",
        "min_from_version": "0.0.0",
        "image": {"name": "img", "size": 3, "sha256": "ab".repeat(32)},
    }))
    .unwrap();
    let manifest = np_common::docs::sign(&release, &SecretKey::from_seed(&[3; 32]));
    ReleaseRecord {
        release,
        manifest,
        rollout_percent: 100,
        paused: false,
        yanked: false,
        created_at: t("2026-01-01T00:00:00Z"),
        created_by: "rita".into(),
        updated_at: t("2026-01-01T00:00:00Z"),
        plan: None,
        halt: None,
        guard_epoch: 0,
        guard_since: None,
    }
}

fn change(action: &str) -> Change<'_> {
    Change {
        actor: Some("alice"),
        action,
        at: t("2026-01-02T00:00:00Z"),
    }
}

async fn a_refused_change_writes_nothing_and_changes_are_audited(store: &Store) {
    let key = SecretKey::from_seed(&[1; 32]);
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    let change = change("register");
    let refused = store
        .mutate_devices(std::slice::from_ref(&s), &change, |recs| {
            recs[0] = Some(record(&s, &key));
            Err("no")
        })
        .await;
    assert!(matches!(refused, Err(MutateError::Rejected("no"))));
    assert_eq!(store.device(&s).await.unwrap(), None);
    assert!(store
        .audit_entries(None, None, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
    for _ in 0..3 {
        store
            .mutate_devices(std::slice::from_ref(&s), &change, |recs| {
                let r = recs[0].get_or_insert_with(|| record(&s, &key));
                r.reissue(&key, change.at);
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
    }
    // A change by the device API (no actor) is stored but not audited.
    let quiet = Change {
        actor: None,
        ..change.clone()
    };
    store
        .mutate_devices(std::slice::from_ref(&s), &quiet, |recs| {
            if let Some(r) = recs[0].as_mut() {
                r.last_check_in = Some(quiet.at);
            }
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    let stored = store.device(&s).await.unwrap().unwrap();
    assert_eq!(stored.sequence, 4);
    assert_eq!(stored.last_check_in, Some(quiet.at));
    let p1 = store
        .audit_entries(Some(s.as_str()), None, 2)
        .await
        .unwrap();
    assert_eq!(p1.entries.len(), 2);
    assert_eq!(p1.entries[0].before, None);
    assert_eq!(p1.entries[0].serial.as_deref(), Some(s.as_str()));
    assert!(p1.entries[0].id < p1.entries[1].id);
    let p2 = store
        .audit_entries(Some(s.as_str()), p1.next_after, 2)
        .await
        .unwrap();
    assert_eq!((p2.entries.len(), p2.next_after), (1, None));
    assert!(store
        .audit_entries(Some("NR-1000-000000-0"), None, 2)
        .await
        .unwrap()
        .entries
        .is_empty());
    assert_eq!(
        store.device_counts().await.unwrap(),
        [
            (Status::Active, 1),
            (Status::Revoked, 0),
            (Status::Replaced, 0)
        ]
    );
}

async fn parallel_changes_of_one_box_lose_nothing(store: &Store) {
    let key = SecretKey::from_seed(&[1; 32]);
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    store
        .mutate_devices(std::slice::from_ref(&s), &change("register"), |recs| {
            recs[0] = Some(record(&s, &key));
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (store, s, key) = (store.clone(), s.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let c = change("extend");
            store
                .mutate_devices(std::slice::from_ref(&s), &c, |recs| {
                    let r = recs[0].as_mut().ok_or("gone")?;
                    r.reissue(&key, c.at);
                    Ok::<(), &str>(())
                })
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(store.device(&s).await.unwrap().unwrap().sequence, 41);
    let page = store
        .audit_entries(Some(s.as_str()), None, 100)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 41);
    // Every entry saw the one before it: the sequences in the log are 1..=41.
    let seqs: Vec<u64> = page
        .entries
        .iter()
        .map(|e| e.after.as_ref().unwrap()["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
}

async fn devices_are_listed_in_serial_order_and_counted(store: &Store) {
    let key = SecretKey::from_seed(&[1; 32]);
    let serials: Vec<Serial> = [("2000", 123_456), ("1000", 0), ("1000", 7)]
        .iter()
        .map(|(m, n)| {
            let digit = np_common::serial::luhn_check_digit(&format!("{m}{n:06}"));
            Serial::parse(&format!("NR-{m}-{n:06}-{digit}")).unwrap()
        })
        .collect();
    store
        .mutate_devices(&serials, &change("register"), |recs| {
            for (r, s) in recs.iter_mut().zip(&serials) {
                let mut d = record(s, &key);
                d.version = Some("1.0.0".parse().unwrap());
                *r = Some(d);
            }
            recs[2].as_mut().unwrap().status = Status::Revoked;
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    let all = store.list_devices(None, 10, |_| true).await.unwrap();
    let names: Vec<String> = all.devices.iter().map(|d| d.serial.to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(all.next_after, None);
    let p1 = store.list_devices(None, 1, |_| true).await.unwrap();
    assert_eq!(p1.next_after.as_deref(), Some(names[0].as_str()));
    let p2 = store
        .list_devices(p1.next_after.as_deref(), 5, |_| true)
        .await
        .unwrap();
    assert_eq!(p2.devices.len(), 2);
    let active = store
        .list_devices(None, 10, |d| d.status == Status::Active)
        .await
        .unwrap();
    assert_eq!(active.devices.len(), 2);
    assert_eq!(
        store.device_counts().await.unwrap(),
        [
            (Status::Active, 2),
            (Status::Revoked, 1),
            (Status::Replaced, 0)
        ]
    );
    let counts = store.install_counts().await.unwrap();
    assert_eq!(counts.get(&"1.0.0".parse().unwrap()), Some(&3));
    // Removing a record deletes it (and audits it).
    store
        .mutate_devices(&serials[..1], &change("delete"), |recs| {
            recs[0] = None;
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    assert_eq!(store.device(&serials[0]).await.unwrap(), None);
    let log = store.audit_entries(None, None, 10).await.unwrap();
    assert_eq!(log.entries.len(), 4);
    assert_eq!(log.entries[3].after, None);
}

async fn audit_is_read_newest_first_with_filters(store: &Store) {
    for i in 0..5u64 {
        let serial = if i % 2 == 0 {
            Some("NR-1000-000000-0")
        } else {
            None
        };
        let e = store
            .append_audit(
                t("2026-01-02T00:00:00Z"),
                "alice",
                &format!("a{i}"),
                serial,
                None,
                Some(serde_json::json!({"i": i})),
            )
            .await
            .unwrap();
        assert_eq!(e.action, format!("a{i}"));
    }
    let all = store
        .audit_entries_newest(None, None, 2, |_| true, |_| false)
        .await
        .unwrap();
    let actions: Vec<&str> = all.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["a4", "a3"]);
    let rest = store
        .audit_entries_newest(None, all.next_after, 10, |_| true, |_| false)
        .await
        .unwrap();
    let actions: Vec<&str> = rest.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!((actions, rest.next_after), (vec!["a2", "a1", "a0"], None));
    let one = store
        .audit_entries_newest(Some("NR-1000-000000-0"), None, 10, |_| true, |_| false)
        .await
        .unwrap();
    assert_eq!(one.entries.len(), 3);
    let kept = store
        .audit_entries_newest(None, None, 10, |e| e.action != "a3", |e| e.action == "a1")
        .await
        .unwrap();
    let actions: Vec<&str> = kept.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["a4", "a2"]);
}

async fn a_nonce_is_a_replay_until_it_expires(store: &Store) {
    let a = Serial::parse("NR-2000-123456-4").unwrap();
    let b = Serial::parse("NR-1000-000000-9").unwrap();
    let now = t("2026-11-23T10:00:00Z");
    let exp = t("2026-11-23T10:05:01Z");
    let n = "00112233445566778899aabb";
    let check = |s: Serial, n: String, exp: Timestamp, now: Timestamp| {
        let store = store.clone();
        async move { store.remember_nonce(&s, &n, exp, now).await.unwrap() }
    };
    assert_eq!(
        check(a.clone(), n.into(), exp, now).await,
        NonceCheck::Fresh
    );
    assert_eq!(
        check(a.clone(), n.into(), exp, now).await,
        NonceCheck::Replayed
    );
    assert_eq!(
        check(a.clone(), n.to_uppercase(), exp, now).await,
        NonceCheck::Replayed
    );
    assert_eq!(
        check(b.clone(), n.into(), exp, now).await,
        NonceCheck::Fresh
    );
    let later = t("2026-11-23T10:05:02Z");
    assert_eq!(store.sweep_nonces(later).await.unwrap(), 0);
    assert_eq!(
        check(a.clone(), n.into(), t("2026-11-23T10:10:03Z"), later).await,
        NonceCheck::Fresh
    );
    // Parallel copies of one request: exactly one is fresh.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        tasks.push(tokio::spawn(check(b.clone(), "feed".into(), exp, now)));
    }
    let mut fresh = 0;
    for task in tasks {
        if task.await.unwrap() == NonceCheck::Fresh {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
}

async fn a_box_holds_a_bounded_number_of_nonces(store: &Store) {
    let a = Serial::parse("NR-2000-123456-4").unwrap();
    let now = t("2026-11-23T10:00:00Z");
    let exp = t("2026-11-23T10:05:01Z");
    for i in 0..nonces::MAX_NONCES_PER_BOX {
        let n = format!("{i:016x}");
        assert_eq!(
            store.remember_nonce(&a, &n, exp, now).await.unwrap(),
            NonceCheck::Fresh
        );
    }
    assert_eq!(
        store
            .remember_nonce(&a, "ffffffffffffffff", exp, now)
            .await
            .unwrap(),
        NonceCheck::TooMany
    );
    let later = t("2026-11-23T10:06:00Z");
    assert_eq!(
        store
            .remember_nonce(&a, "ffffffffffffffff", t("2026-11-23T10:11:01Z"), later)
            .await
            .unwrap(),
        NonceCheck::Fresh
    );
}

async fn releases_are_created_once_and_changed_under_a_lock(store: &Store) {
    let r1 = release_record("1.0.0");
    let r2 = release_record("1.10.0");
    let c = change("release_create");
    assert!(store
        .insert_release(&r1, &c, serde_json::json!({"v": "1.0.0"}))
        .await
        .unwrap());
    assert!(!store
        .insert_release(&r1, &c, serde_json::json!({"v": "1.0.0"}))
        .await
        .unwrap());
    assert!(store
        .insert_release(&r2, &c, serde_json::json!({"v": "1.10.0"}))
        .await
        .unwrap());
    let log = store.audit_entries(None, None, 10).await.unwrap();
    assert_eq!(log.entries.len(), 2, "a refused duplicate is not audited");
    let versions: Vec<String> = store
        .releases()
        .await
        .unwrap()
        .iter()
        .map(|r| r.release.version.to_string())
        .collect();
    assert_eq!(versions, ["1.10.0", "1.0.0"]);
    let v1: Version = "1.0.0".parse().unwrap();
    assert_eq!(store.release(&v1).await.unwrap(), Some(r1.clone()));
    assert_eq!(
        store.release(&"9.9.9".parse().unwrap()).await.unwrap(),
        None
    );
    let missing = store
        .update_release(&"9.9.9".parse().unwrap(), |_| Ok::<(), ()>(()))
        .await;
    assert!(matches!(missing, Err(ReleaseChangeError::NotFound)));
    let refused = store
        .update_release(&v1, |r| {
            r.yanked = true;
            Err("no")
        })
        .await;
    assert!(matches!(refused, Err(ReleaseChangeError::Rejected("no"))));
    assert!(!store.release(&v1).await.unwrap().unwrap().yanked);
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, v1) = (store.clone(), v1.clone());
        tasks.push(tokio::spawn(async move {
            store
                .update_release(&v1, |r| {
                    r.rollout_percent = r.rollout_percent.saturating_sub(1);
                    Ok::<(), ()>(())
                })
                .await
                .map(|_| ())
                .map_err(|_| ())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let (before, after) = store
        .update_release(&v1, |r| {
            r.paused = true;
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    assert!(!before.paused && after.paused);
    assert_eq!(after.rollout_percent, 90);
}

async fn reports_and_events_are_kept(store: &Store) {
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    let v: Version = "2.0.0".parse().unwrap();
    assert_eq!(
        store.device_report(&s).await.unwrap(),
        DeviceReport::default()
    );
    let mut tasks = Vec::new();
    for i in 0..10u64 {
        let (store, s) = (store.clone(), s.clone());
        tasks.push(tokio::spawn(async move {
            store
                .update_device_report(&s, |r| {
                    r.rolled_back_from.push(format!("1.0.{i}").parse().unwrap());
                })
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = store.device_report(&s).await.unwrap();
    assert_eq!(report.rolled_back_from.len(), 10, "no update lost");
    for (i, kind) in [EventKind::Download, EventKind::Install, EventKind::Failure]
        .into_iter()
        .enumerate()
    {
        let e = EventRecord {
            at: t("2026-01-02T00:00:00Z"),
            version: Some(v.clone()),
            event: kind,
            detail: format!("e{i}"),
        };
        let dropped = store.append_device_event(&s, &e, 2).await.unwrap();
        assert_eq!(dropped, usize::from(i == 2));
    }
    let events = store.device_events(&s, 10).await.unwrap();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["e2", "e1"]);
    assert_eq!(store.device_events(&s, 1).await.unwrap().len(), 1);
}

async fn guard_marks_are_kept_one_per_box_and_release(store: &Store) {
    let v: Version = "5.3.0".parse().unwrap();
    let w: Version = "5.4.0".parse().unwrap();
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    let m = Mark {
        attempt_at: t("2026-11-01T00:00:00Z"),
        epoch: 1,
        failed_at: None,
        staff_rollback: false,
    };
    assert!(store.tally_marks().await.unwrap().is_empty());
    assert_eq!(store.put_tally_mark(&v, &s, &m).await.unwrap(), m);
    let failed = Mark {
        failed_at: Some(t("2026-11-01T01:00:00Z")),
        ..m
    };
    assert_eq!(store.put_tally_mark(&v, &s, &failed).await.unwrap(), failed);
    store.put_tally_mark(&w, &s, &m).await.unwrap();
    let mut marks = store.tally_marks().await.unwrap();
    marks.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(marks, vec![(v, s.clone(), failed), (w, s, m)]);
}

pub(crate) fn stored_receipt(
    serial: &Serial,
    seq: u64,
    outcome: np_common::api::Outcome,
    detail: &str,
) -> StoredReceipt {
    let receipt = np_common::device_docs::Receipt {
        serial: serial.clone(),
        seq,
        from_version: Some("1.0.0".parse().unwrap()),
        to_version: Some("2.0.0".parse().unwrap()),
        outcome,
        detail: detail.into(),
        at: t("2026-01-03T00:00:00Z"),
        image_sha256: None,
        request_nonce: None,
    };
    let key = SecretKey::from_seed(&[1; 32]);
    StoredReceipt {
        envelope: np_common::device_docs::sign_device(&receipt, &key),
        receipt,
        received_at: t("2026-01-04T00:00:00Z"),
        via: "alice".into(),
    }
}

async fn receipts_are_filed_once_and_move_the_record_when_newest(store: &Store) {
    use np_common::api::Outcome;
    let key = SecretKey::from_seed(&[1; 32]);
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    let r5 = stored_receipt(&s, 5, Outcome::Installed, "ok");
    assert_eq!(
        store.file_receipt(&r5, Some("alice"), 10).await.unwrap(),
        None
    );
    assert_eq!(store.receipt(&s, 5).await.unwrap(), None);
    store
        .mutate_devices(std::slice::from_ref(&s), &change("register"), |recs| {
            recs[0] = Some(record(&s, &key));
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    assert_eq!(
        store.file_receipt(&r5, Some("alice"), 10).await.unwrap(),
        Some(ReceiptFiled::New { latest: true })
    );
    let d = store.device(&s).await.unwrap().unwrap();
    assert_eq!(d.last_receipt_seq, Some(5));
    assert_eq!(d.version, Some("2.0.0".parse().unwrap()));
    assert_eq!(
        store.file_receipt(&r5, Some("alice"), 10).await.unwrap(),
        Some(ReceiptFiled::Duplicate)
    );
    let other5 = stored_receipt(&s, 5, Outcome::Failed, "reset");
    assert_eq!(
        store.file_receipt(&other5, None, 10).await.unwrap(),
        Some(ReceiptFiled::Conflict)
    );
    // An older receipt is kept and moves nothing; without an actor, nothing is audited.
    let r3 = stored_receipt(&s, 3, Outcome::Failed, "older");
    assert_eq!(
        store.file_receipt(&r3, None, 10).await.unwrap(),
        Some(ReceiptFiled::New { latest: false })
    );
    assert_eq!(store.device(&s).await.unwrap().unwrap(), d);
    assert_eq!(store.receipt(&s, 5).await.unwrap(), Some(r5.clone()));
    let listed: Vec<u64> = store
        .device_receipts(&s, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.receipt.seq)
        .collect();
    assert_eq!(listed, [5, 3]);
    assert_eq!(store.device_receipts(&s, 1).await.unwrap().len(), 1);
    let log = store
        .audit_entries(Some(s.as_str()), None, 10)
        .await
        .unwrap();
    let actions: Vec<&str> = log.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["register", "receipt"]);
    let events = store.device_events(&s, 10).await.unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].event, EventKind::Failure);
    assert_eq!(events[1].event, EventKind::Commit);
}

async fn an_audited_release_change_and_its_entry_are_one(store: &Store) {
    let r1 = release_record("1.0.0");
    let v1: Version = "1.0.0".parse().unwrap();
    store
        .insert_release(
            &r1,
            &Change {
                actor: None,
                ..change("release_create")
            },
            serde_json::json!({}),
        )
        .await
        .unwrap();
    let snaps = |b: &ReleaseRecord, a: &ReleaseRecord| {
        (
            serde_json::json!({"paused": b.paused}),
            serde_json::json!({"paused": a.paused}),
        )
    };
    let refused = store
        .update_release_audited(
            &v1,
            &change("release_halt"),
            |r| {
                r.paused = true;
                Err("no")
            },
            snaps,
        )
        .await;
    assert!(matches!(refused, Err(ReleaseChangeError::Rejected("no"))));
    assert!(store
        .audit_entries(None, None, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
    let missing = store
        .update_release_audited(
            &"9.9.9".parse().unwrap(),
            &change("release_halt"),
            |_| Ok::<(), ()>(()),
            snaps,
        )
        .await;
    assert!(matches!(missing, Err(ReleaseChangeError::NotFound)));
    let (before, after) = store
        .update_release_audited(
            &v1,
            &change("release_halt"),
            |r| {
                r.paused = true;
                Ok::<(), ()>(())
            },
            snaps,
        )
        .await
        .unwrap();
    assert!(!before.paused && after.paused);
    assert!(store.release(&v1).await.unwrap().unwrap().paused);
    let log = store.audit_entries(None, None, 10).await.unwrap();
    assert_eq!(log.entries.len(), 1);
    assert_eq!(log.entries[0].action, "release_halt");
    assert_eq!(
        log.entries[0].after,
        Some(serde_json::json!({"paused": true}))
    );
}

fn a_case(id: crate::domain::case::CaseId, serial: &Serial, at: Timestamp) -> CaseRecord {
    use crate::domain::case::{Channel, Severity};
    CaseRecord::new(
        id,
        serial.clone(),
        "alice",
        Channel::Phone,
        "it beeps".into(),
        Severity::Normal,
        at,
    )
}

fn case_change(action: &str) -> CaseChange<'_> {
    CaseChange {
        actor: "alice",
        action,
        device_action: "diagnostics_request",
        at: t("2026-01-03T00:00:00Z"),
    }
}

async fn cases_get_unique_ids_are_listed_newest_first_and_audited(store: &Store) {
    let key = SecretKey::from_seed(&[1; 32]);
    let s1 = Serial::parse("NR-2000-123456-4").unwrap();
    let s2 = Serial::parse("NR-1000-000000-9").unwrap();
    for s in [&s1, &s2] {
        store
            .mutate_devices(std::slice::from_ref(s), &change("register"), |recs| {
                recs[0] = Some(record(s, &key));
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
    }
    let opening = case_change("case_open");
    // A refusal writes nothing, and the builder saw the box's record.
    let refused = store
        .open_case(&s1, &opening, |_, d| {
            assert_eq!(d.map(|d| d.serial.clone()), Some(s1.clone()));
            Err::<CaseRecord, _>("no")
        })
        .await;
    assert!(matches!(refused, Err(MutateError::Rejected("no"))));
    let unknown = Serial::parse("NR-3000-000000-7").unwrap();
    let seen = store
        .open_case(&unknown, &opening, |_, d| Err::<CaseRecord, _>(d.is_none()))
        .await;
    assert!(matches!(seen, Err(MutateError::Rejected(true))));
    // Opened in parallel: every id is new.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = store.clone();
        let s = if i % 3 == 0 { s2.clone() } else { s1.clone() };
        tasks.push(tokio::spawn(async move {
            let change = case_change("case_open");
            store
                .open_case(&s, &change, |id, _| Ok::<_, ()>(a_case(id, &s, change.at)))
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    // Numbers start at the first case number and stay small (no jumps of sled's id
    // generator); a refused opening may leave a gap.
    assert!(ids[0].number() >= crate::domain::case::FIRST_CASE_NUMBER);
    assert!(
        ids[5].number() < crate::domain::case::FIRST_CASE_NUMBER + 20,
        "{ids:?}"
    );
    let got = store.case(ids[0]).await.unwrap().unwrap();
    assert_eq!(got.id, ids[0]);
    let missing = crate::domain::case::CaseId::from_number(9);
    assert_eq!(store.case(missing).await.unwrap(), None);
    // All, newest first, in pages.
    let all = store.list_cases(None, None, 100, |_| true).await.unwrap();
    let listed: Vec<_> = all.cases.iter().map(|c| c.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!((listed, all.next_before), (newest_first.clone(), None));
    let p1 = store.list_cases(None, None, 4, |_| true).await.unwrap();
    assert_eq!(p1.cases.len(), 4);
    assert_eq!(p1.next_before, Some(newest_first[3]));
    let p2 = store
        .list_cases(None, p1.next_before, 4, |_| true)
        .await
        .unwrap();
    assert_eq!(
        p2.cases.iter().map(|c| c.id).collect::<Vec<_>>(),
        newest_first[4..]
    );
    assert_eq!(p2.next_before, None);
    // One box's, and a filter.
    let of_s2 = store
        .list_cases(Some(&s2), None, 100, |_| true)
        .await
        .unwrap();
    assert_eq!(of_s2.cases.len(), 2);
    assert!(of_s2.cases.iter().all(|c| c.serial == s2));
    assert!(of_s2.cases[0].id > of_s2.cases[1].id);
    let one = store
        .list_cases(Some(&s1), None, 1, |c| c.id != newest_first[0])
        .await
        .unwrap();
    assert_eq!(one.cases.len(), 1);
    assert!(one.next_before.is_some());
    assert!(store
        .list_cases(Some(&unknown), None, 10, |_| true)
        .await
        .unwrap()
        .cases
        .is_empty());
    // Each opening is audited on its box, with the case as "after".
    let audit = store
        .audit_entries(Some(s2.as_str()), None, 100)
        .await
        .unwrap();
    let opens: Vec<_> = audit
        .entries
        .iter()
        .filter(|e| e.action == "case_open")
        .collect();
    assert_eq!(opens.len(), 2);
    assert_eq!(opens[0].before, None);
    assert_eq!(opens[0].after.as_ref().unwrap()["serial"], s2.as_str());
}

async fn a_case_and_its_devices_change_in_one_transaction(store: &Store) {
    let key = SecretKey::from_seed(&[1; 32]);
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    store
        .mutate_devices(std::slice::from_ref(&s), &change("register"), |recs| {
            recs[0] = Some(record(&s, &key));
            Ok::<(), ()>(())
        })
        .await
        .unwrap();
    let opening = case_change("case_open");
    let case = store
        .open_case(&s, &opening, |id, _| {
            Ok::<_, ()>(a_case(id, &s, opening.at))
        })
        .await
        .unwrap();
    let audited = |store: Store| async move {
        store
            .audit_entries(Some("NR-2000-123456-4"), None, 100)
            .await
            .unwrap()
            .entries
    };
    let before = audited(store.clone()).await.len();
    // Refused: neither the case nor the device changes, nothing is audited.
    let change = case_change("diagnostics_request");
    let refused = store
        .mutate_case(case.id, std::slice::from_ref(&s), &change, |c, recs| {
            c.summary = "changed".into();
            if let Some(d) = recs[0].as_mut() {
                d.customer = "changed".into();
            }
            Err("no")
        })
        .await;
    assert!(matches!(refused, Err(MutateError::Rejected("no"))));
    assert_eq!(store.case(case.id).await.unwrap().unwrap(), case);
    assert_eq!(store.device(&s).await.unwrap().unwrap().customer, "ACME");
    assert_eq!(audited(store.clone()).await.len(), before);
    // No such case: nothing runs.
    let none = store
        .mutate_case(
            crate::domain::case::CaseId::from_number(5),
            &[],
            &change,
            |_, _| Err::<(), _>("must not run"),
        )
        .await
        .unwrap();
    assert!(none.is_none());
    // Both change, the device being the case's own box and `device_action` the case's
    // action: one audit entry, which carries the box's change under `device`.
    let done = store
        .mutate_case(case.id, std::slice::from_ref(&s), &change, |c, recs| {
            c.note("alice", "asked the box".into(), change.at)
                .map_err(|_| "closed")?;
            let d = recs[0].as_mut().ok_or("unregistered")?;
            d.customer = "ACME Ltd".into();
            Ok::<(), &str>(())
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.case.entries.len(), 1);
    assert_eq!(done.devices[0].as_ref().unwrap().customer, "ACME Ltd");
    assert_eq!(store.case(case.id).await.unwrap().unwrap(), done.case);
    assert_eq!(
        store.device(&s).await.unwrap().unwrap().customer,
        "ACME Ltd"
    );
    let entries = audited(store.clone()).await;
    let new: Vec<_> = entries[before..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(new, ["diagnostics_request"]);
    let case_entry = entries
        .iter()
        .rev()
        .find(|e| e.after.as_ref().is_some_and(|a| a.get("id").is_some()))
        .unwrap();
    assert_eq!(case_entry.before.as_ref().unwrap()["entries"], 0);
    assert_eq!(case_entry.after.as_ref().unwrap()["entries"], 1);
    assert_eq!(
        case_entry.before.as_ref().unwrap()["device"]["customer"],
        "ACME"
    );
    assert_eq!(
        case_entry.after.as_ref().unwrap()["device"]["customer"],
        "ACME Ltd"
    );
    // Under another device action: two entries, the device's of its own.
    let other = CaseChange {
        action: "case_note",
        ..case_change("case_note")
    };
    store
        .mutate_case(case.id, std::slice::from_ref(&s), &other, |c, recs| {
            c.note("alice", "again".into(), other.at)
                .map_err(|_| "closed")?;
            let d = recs[0].as_mut().ok_or("unregistered")?;
            d.customer = "ACME Inc".into();
            Ok::<(), &str>(())
        })
        .await
        .unwrap()
        .unwrap();
    let entries = audited(store.clone()).await;
    let mut newest: Vec<_> = entries[entries.len() - 2..]
        .iter()
        .map(|e| e.action.as_str())
        .collect();
    newest.sort_unstable();
    assert_eq!(newest, ["case_note", "diagnostics_request"]);
    // A change that changes nothing writes no entry.
    store
        .mutate_case(case.id, &[], &change, |_, _| Ok::<(), ()>(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audited(store.clone()).await.len(), entries.len());
}

async fn parallel_changes_of_one_case_lose_nothing(store: &Store) {
    let s = Serial::parse("NR-2000-123456-4").unwrap();
    let opening = case_change("case_open");
    let case = store
        .open_case(&s, &opening, |id, _| {
            Ok::<_, ()>(a_case(id, &s, opening.at))
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let change = case_change("case_note");
            store
                .mutate_case(case.id, &[], &change, |c, _| {
                    c.note("alice", format!("note {i}"), change.at)
                        .map_err(|_| ())
                })
                .await
                .unwrap()
                .unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = store.case(case.id).await.unwrap().unwrap();
    let mut notes: Vec<_> = stored.entries.iter().map(|e| e.text.clone()).collect();
    notes.sort();
    assert_eq!(
        notes,
        (0..8).map(|i| format!("note {i}")).collect::<Vec<_>>()
    );
}

/// A keyring record of `version` whose online key is made from `seed`.
pub(crate) fn keyring_record(version: u64, seed: u8) -> KeyringRecord {
    use np_common::docs::Role;
    use np_common::keyring::{KeyEntry, Keyring, RootSpec};
    let root = SecretKey::from_seed(&[9; 32]);
    let online = SecretKey::from_seed(&[seed; 32]);
    let keyring = Keyring {
        version,
        expires: t("2030-01-01T00:00:00Z"),
        root: RootSpec::pinned(vec![root.public_key()]),
        keys: vec![KeyEntry {
            keyid: online.public_key().key_id(),
            public_key: online.public_key(),
            roles: vec![Role::Entitlement, Role::Time, Role::Release],
        }],
    };
    let envelope = keyring.sign(&[&root]);
    KeyringRecord {
        version,
        key_ids: vec![online.public_key().key_id().to_string()],
        envelope: String::from_utf8(envelope.to_json()).unwrap(),
    }
}

async fn the_keyring_record_only_moves_forward(store: &Store) {
    assert_eq!(store.keyring_record().await.unwrap(), None);
    let v1 = keyring_record(1, 1);
    // None recorded: the first wins.
    assert_eq!(store.advance_keyring(&v1).await.unwrap(), v1);
    // The same version with other keys does not replace it: the caller sees the first.
    let other = keyring_record(1, 2);
    let held = store.advance_keyring(&other).await.unwrap();
    assert_eq!(held, v1);
    assert!(!held.same_keyring(&other));
    assert!(held.same_keyring(&v1));
    // A newer one replaces it; an older one then changes nothing.
    let v2 = keyring_record(2, 3);
    assert_eq!(store.advance_keyring(&v2).await.unwrap(), v2);
    assert_eq!(store.advance_keyring(&v1).await.unwrap(), v2);
    assert_eq!(store.keyring_record().await.unwrap(), Some(v2.clone()));
    assert!(
        v2.describe().starts_with("version 2 (keys "),
        "{}",
        v2.describe()
    );
}

async fn replicas_recording_their_keyring_together_agree_on_one(store: &Store) {
    let records: Vec<KeyringRecord> = (1..=8).map(|seed| keyring_record(1, seed)).collect();
    let runs: Vec<_> = records
        .iter()
        .map(|r| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move { store.advance_keyring(&r).await.unwrap() })
        })
        .collect();
    let mut answers = Vec::new();
    for r in runs {
        answers.push(r.await.unwrap());
    }
    let winner = store.keyring_record().await.unwrap().unwrap();
    assert!(records.contains(&winner));
    assert!(
        answers.iter().all(|a| *a == winner),
        "every caller sees the winner"
    );
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = super::Store::open(dir.path()).unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::create().await else {
                        return;
                    };
                    let store = super::Store::connect(&db.url).await.unwrap();
                    super::$name(&store).await;
                    drop(store);
                    drop(db);
                }
            )*
        }
    };
}

contract!(
    a_refused_change_writes_nothing_and_changes_are_audited,
    parallel_changes_of_one_box_lose_nothing,
    devices_are_listed_in_serial_order_and_counted,
    audit_is_read_newest_first_with_filters,
    a_nonce_is_a_replay_until_it_expires,
    a_box_holds_a_bounded_number_of_nonces,
    releases_are_created_once_and_changed_under_a_lock,
    reports_and_events_are_kept,
    guard_marks_are_kept_one_per_box_and_release,
    receipts_are_filed_once_and_move_the_record_when_newest,
    an_audited_release_change_and_its_entry_are_one,
    cases_get_unique_ids_are_listed_newest_first_and_audited,
    a_case_and_its_devices_change_in_one_transaction,
    parallel_changes_of_one_case_lose_nothing,
    the_keyring_record_only_moves_forward,
    replicas_recording_their_keyring_together_agree_on_one,
);
