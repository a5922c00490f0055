//! Many concurrent writes complete (regression: sled 0.34's concurrent `flush_async`
//! deadlocked after ~150 parallel registrations) and all of them are stored.
#![allow(clippy::unwrap_used)]

mod common;

use common::{serial, Api};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_hundred_parallel_registrations_finish() {
    let api = Arc::new(Api::new());
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for n in (t..400).step_by(16) {
                api.register(&serial("NR-1000", n), "2026-01-01").await;
            }
        }));
    }
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("400 registrations finish (no flush deadlock)");
    let (s, v) = api.call("GET", "/api/v1/devices?limit=1000", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["devices"].as_array().unwrap().len(), 400);
}
