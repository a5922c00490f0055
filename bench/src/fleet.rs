//! Simulated boxes: registration through the staff API, then signed check-ins through the
//! device API, measured at each fleet size. With `--guard-compare`, a release is published
//! for each size and the size is measured three times in a row over it: "without" (a fixed
//! 50 %, no plan, and check-ins that report nothing about the release: the guard has
//! nothing to do), "with" (a plan whose first stage is 50 % and the rollout guard active;
//! every check-in reports a last result for the release, one box in ten `rolled_back`, so
//! each box's first check-in is a new attempt, or a new attempt and failure, and the
//! counting and threshold path runs, below the threshold so nothing halts), and "without"
//! again.

use crate::stats::{openssl_ed25519, percentile, rss_kib};
use anyhow::{bail, Context as _};
use futures_util::stream::{self, StreamExt as _};
use np_common::api::RequestSignature;
use np_common::serial::luhn_check_digit;
use np_common::SecretKey;
use sha2::{Digest as _, Sha256};
use std::time::{Duration, Instant};

/// Options of `np-bench fleet`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The np-server to load; only loopback addresses are accepted. Several (comma-separated,
    /// replicas on one database) share the load: box i registers and checks in through
    /// server i mod n; staff requests go to the first.
    #[arg(
        long = "server",
        env = "NP_SERVER",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    servers: Vec<String>,
    /// A staff or admin token, to register the boxes.
    #[arg(long, env = "NP_TOKEN", hide_env_values = true)]
    token: String,
    /// Fleet sizes to measure at, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    sizes: Vec<u32>,
    /// Seconds of check-ins at each size.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// At most this many check-ins at each size.
    #[arg(long, default_value_t = 500_000)]
    max_checkins: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The servers' pids (comma-separated), to report their memory.
    #[arg(long = "server-pid", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// Compare check-ins with a release under a plan and the rollout guard counting new
    /// attempts and failures against the same release at a fixed percent with no reports
    /// (needs an admin token).
    #[arg(long)]
    guard_compare: bool,
}

/// The release `--guard-compare` publishes for the `i`-th fleet size (a fresh one per size,
/// so that its boxes' first reports are new attempts).
fn guard_version(i: usize) -> String {
    format!("2.{i}.0")
}

const PATH: &str = "/api/v1/device/check-in";

/// The index-th simulated box: a valid NR-2000 serial and a key derived from the index.
fn simulated_box(index: u32) -> (String, SecretKey) {
    let digits = format!("2000{:06}", index % 1_000_000);
    let serial = format!(
        "NR-2000-{:06}-{}",
        index % 1_000_000,
        luhn_check_digit(&digits)
    );
    let seed: [u8; 32] = Sha256::digest(format!("np-bench box {index}")).into();
    (serial, SecretKey::from_seed(&seed))
}

impl Args {
    /// The server box `index` talks to.
    fn server_for(&self, index: u32) -> &str {
        let n = self.servers.len().max(1);
        self.servers
            .get(index as usize % n)
            .map_or("http://127.0.0.1:8080", String::as_str)
    }

    /// The server staff requests go to.
    fn first_server(&self) -> &str {
        self.server_for(0)
    }
}

fn check_loopback(url: &str) -> anyhow::Result<()> {
    let u = reqwest::Url::parse(url).with_context(|| format!("--server {url:?} is not a URL"))?;
    match u.host_str() {
        Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => Ok(()),
        other => bail!(
            "--server must be a loopback address (127.0.0.1, localhost, [::1]); got {other:?}"
        ),
    }
}

/// Registers boxes `from..to`; returns the seconds it took. A box that exists is fine.
async fn register(client: &reqwest::Client, a: &Args, from: u32, to: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    let today = jiff::Zoned::now().date().to_string();
    let results: Vec<anyhow::Result<()>> = stream::iter(from..to)
        .map(|i| {
            let (serial, key) = simulated_box(i);
            let body = serde_json::json!({
                "serial": serial, "purchase_date": today, "customer": "np-bench",
                "device_key": key.public_key().to_base64(),
            });
            let req = client
                .post(format!("{}/api/v1/devices", a.server_for(i)))
                .bearer_auth(&a.token)
                .json(&body);
            async move {
                let resp = req.send().await.context("registering a box")?;
                let status = resp.status().as_u16();
                if status == 201 || status == 409 {
                    Ok(())
                } else {
                    bail!(
                        "registering {serial} answered {status}: {}",
                        resp.text().await.unwrap_or_default()
                    )
                }
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    Ok(start.elapsed().as_secs_f64())
}

async fn check_in(
    client: &reqwest::Client,
    server: &str,
    index: u32,
    report: Option<&str>,
) -> Result<Duration, String> {
    let (serial, key) = simulated_box(index);
    let nonce = hex::encode(&Sha256::digest(format!("{index}-{:?}", Instant::now()))[..8]);
    let mut req = serde_json::json!({
        "version": "1.0.0", "slot": "a", "state": "idle", "nonce": nonce,
    });
    if let Some(version) = report {
        let outcome = if index.is_multiple_of(10) {
            "rolled_back"
        } else {
            "installed"
        };
        req["last_result"] = serde_json::json!({"version": version, "outcome": outcome,
            "detail": "np-bench", "at": "2026-01-01T00:00:00Z"});
    }
    let body = serde_json::to_vec(&req).map_err(|e| e.to_string())?;
    let sig = RequestSignature::sign(
        &key,
        "POST",
        PATH,
        jiff::Timestamp::now(),
        &crate::sign::request_nonce().map_err(|e| e.to_string())?,
        &body,
    );
    let start = Instant::now();
    let mut req = client.post(format!("{server}{PATH}"));
    for (name, value) in sig.headers(&serial) {
        req = req.header(name, value);
    }
    let resp = req
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let _ = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(start.elapsed())
    } else {
        Err(format!("check-in of {serial} answered {status}"))
    }
}

/// Sends a staff request and fails unless it answers one of `ok`.
async fn staff(
    a: &Args,
    req: reqwest::RequestBuilder,
    what: &str,
    ok: &[u16],
) -> anyhow::Result<serde_json::Value> {
    let resp = req
        .bearer_auth(&a.token)
        .send()
        .await
        .with_context(|| what.to_owned())?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if !ok.contains(&status) {
        bail!("{what} answered {status}: {text}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

/// Publishes a release `--guard-compare` steers (a small image; fine if it exists).
async fn publish(client: &reqwest::Client, a: &Args, version: &str) -> anyhow::Result<()> {
    let image = b"np-bench guard-compare image".to_vec();
    let blob = staff(
        a,
        client
            .put(format!("{}/api/v1/blobs", a.first_server()))
            .body(image),
        "uploading the image",
        &[200, 201],
    )
    .await?;
    let body = serde_json::json!({"version": version, "security_version": 1,
        "models": ["NR-2000"], "min_from_version": "1.0.0",
        "image": {"sha256": blob["sha256"]}, "notes": "np-bench"});
    staff(
        a,
        client
            .post(format!("{}/api/v1/releases", a.first_server()))
            .json(&body),
        "publishing the release",
        &[201, 409],
    )
    .await?;
    Ok(())
}

/// Sets the release's rollout (`PATCH`, or `GET` with no body); answers the release.
async fn steer(
    client: &reqwest::Client,
    a: &Args,
    version: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("{}/api/v1/releases/{version}", a.first_server());
    let req = match body {
        Some(b) => client.patch(url).json(&b),
        None => client.get(url),
    };
    let r = staff(a, req, "changing the release's rollout", &[200]).await?;
    if r["paused"] == true {
        bail!("the release is paused (the guard halted it?): {r}");
    }
    Ok(r)
}

/// The phases of `--guard-compare`: a label, the rollout set before it, and whether the
/// check-ins report a last result for the release.
fn guard_phases() -> [(&'static str, serde_json::Value, bool); 3] {
    let fixed = serde_json::json!({"plan": null, "rollout_percent": 50});
    [
        ("without: fixed 50%, no reports", fixed.clone(), false),
        (
            "with: plan 50:1h,100 + guard, reports",
            serde_json::json!({"plan": {"stages": [{"percent": 50, "hold": "1h"}, {"percent": 100}],
                "max_failure_percent": 50, "min_attempts": 20}}),
            true,
        ),
        ("without again", fixed, false),
    ]
}

/// Check-ins against boxes `0..size` for the configured time or count.
async fn measure(
    client: &reqwest::Client,
    a: &Args,
    size: u32,
    label: &str,
    report: Option<&str>,
) -> anyhow::Result<(f64, usize)> {
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let start = Instant::now();
    let picks =
        (0..a.max_checkins).map(|n| ((n.wrapping_mul(2_654_435_761)) % u64::from(size)) as u32);
    let results: Vec<Result<Duration, String>> = stream::iter(picks)
        .take_while(|_| futures_util::future::ready(Instant::now() < deadline))
        .map(|i| check_in(client, a.server_for(i), i, report))
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    lat.sort();
    let rate = lat.len() as f64 / elapsed;
    println!(
        "fleet {size:>7}{label}: {:>7} check-ins in {elapsed:.1}s = {rate:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        lat.len(),
        percentile(&lat, 50.0).as_secs_f64() * 1e3,
        percentile(&lat, 99.0).as_secs_f64() * 1e3,
        errors.len()
    );
    if let Some(first) = errors.first() {
        println!("  first error: {first}");
    }
    let mut total = 0;
    for &pid in &a.server_pids {
        if let Some((rss, hwm)) = rss_kib(pid) {
            total += rss;
            println!(
                "  server pid {pid} RSS {} MiB (peak {} MiB)",
                rss / 1024,
                hwm / 1024
            );
        }
    }
    if a.server_pids.len() > 1 {
        println!("  servers' RSS together {} MiB", total / 1024);
    }
    if let Some((sign, verify)) = openssl_ed25519() {
        // A check-in costs the box one signature and the server one verification plus the
        // signatures of its answer (time token; entitlement re-use); the pair is the floor.
        let pairs = 1.0 / (1.0 / sign + 1.0 / verify);
        println!(
            "  openssl ed25519: {sign:.0} sign/s, {verify:.0} verify/s per core = {pairs:.0} sign+verify pairs/s; check-ins/pairs = {:.2}",
            rate / pairs
        );
    }
    Ok((rate, lat.len()))
}

/// Runs the fleet benchmark.
pub async fn run(a: Args) -> anyhow::Result<()> {
    if a.servers.is_empty() {
        bail!("--server names no server");
    }
    for s in &a.servers {
        check_loopback(s)?;
    }
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let mut registered = 0u32;
    let mut sizes = a.sizes.clone();
    sizes.sort_unstable();
    for (i, &size) in sizes.iter().enumerate() {
        if size > registered {
            let secs = register(&client, &a, registered, size).await?;
            let n = size - registered;
            println!(
                "registered {n} boxes ({registered}..{size}) in {secs:.1}s = {:.0}/s",
                f64::from(n) / secs
            );
            registered = size;
        }
        if !a.guard_compare {
            measure(&client, &a, size, "", None).await?;
            continue;
        }
        let version = guard_version(i);
        publish(&client, &a, &version).await?;
        let mut rates = Vec::new();
        for (label, body, report) in guard_phases() {
            steer(&client, &a, &version, Some(body)).await?;
            let before = steer(&client, &a, &version, None).await?;
            let report = report.then_some(version.as_str());
            let (rate, n) = measure(&client, &a, size, &format!(" [{label}]"), report).await?;
            let after = steer(&client, &a, &version, None).await?;
            let delta = |k: &str| {
                let n = |v: &serde_json::Value| v[k].as_u64().unwrap_or(0);
                n(&after).saturating_sub(n(&before))
            };
            println!(
                "  the guard counted {} new attempts and {} new failures in {n} check-ins",
                delta("attempts"),
                delta("failures")
            );
            rates.push(rate);
        }
        if let [without, with, again] = rates[..] {
            let base = (without + again) / 2.0;
            println!(
                "  with vs without (mean of both without phases): {with:.0}/s vs {base:.0}/s = {:.3} ({:+.1} %)",
                with / base,
                (with / base - 1.0) * 100.0
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_boxes_have_valid_distinct_serials() {
        let (a, ka) = simulated_box(0);
        let (b, kb) = simulated_box(99_999);
        assert!(np_common::Serial::parse(&a).is_ok());
        assert!(np_common::Serial::parse(&b).is_ok());
        assert_ne!(ka.public_key(), kb.public_key());
    }

    #[test]
    fn boxes_are_spread_over_the_servers_and_staff_uses_the_first() {
        let a = Args {
            servers: vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
            token: String::new(),
            sizes: vec![10],
            seconds: 1,
            max_checkins: 1,
            concurrency: 1,
            server_pids: vec![],
            guard_compare: false,
        };
        assert_eq!(a.server_for(0), "http://127.0.0.1:1");
        assert_eq!(a.server_for(1), "http://127.0.0.1:2");
        assert_eq!(a.server_for(7), "http://127.0.0.1:2");
        assert_eq!(a.first_server(), "http://127.0.0.1:1");
    }

    #[test]
    fn only_loopback_is_loaded() {
        assert!(check_loopback("http://127.0.0.1:8080").is_ok());
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:8080").is_err());
        assert!(check_loopback("not a url").is_err());
    }
}
