//! A fresh PostgreSQL database per test, made with `psql` on the server that `.ci/run`
//! starts: `NP_TEST_PG_URL` (a role that may create databases), or else
//! `postgres://np_test:np_test@127.0.0.1:5432/postgres`. Without a reachable server the
//! test is skipped with a message, except in CI (`CI=true`) or when `NP_TEST_PG_URL` is
//! set, where it fails saying why. The database is dropped when the guard drops.

use crate::run;
use std::process::Command;
use std::time::Duration;

const DEFAULT_URL: &str = "postgres://np_test:np_test@127.0.0.1:5432/postgres";

/// A database made for one test.
pub struct PgDb {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

fn psql(url: &str, sql: &str) -> crate::Output {
    run(
        Command::new("psql")
            .arg(url)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGCONNECT_TIMEOUT", "5"),
        Duration::from_secs(30),
    )
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}

impl PgDb {
    /// A fresh database, or `None` when PostgreSQL is not reachable outside CI.
    pub fn create() -> Option<PgDb> {
        let explicit = std::env::var("NP_TEST_PG_URL").ok();
        let admin_url = explicit.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
        let has_psql = Command::new("psql").arg("--version").output().is_ok();
        let probe = has_psql.then(|| psql(&admin_url, "SELECT 1"));
        let reachable = probe.as_ref().is_some_and(|o| o.code == 0);
        if !reachable {
            let why = match &probe {
                None => "psql is not installed".to_owned(),
                Some(o) => o.stderr.trim().to_owned(),
            };
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci && explicit.is_none(),
                "PostgreSQL is not reachable at {} ({why}): this test must run here (.ci/run installs and starts it)",
                redact(&admin_url)
            );
            eprintln!(
                "skipped: no PostgreSQL at {} ({why}); set NP_TEST_PG_URL or run .ci/run",
                redact(&admin_url)
            );
            return None;
        }
        let mut raw = [0u8; 8];
        rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())
            .expect("random bytes");
        let name = format!("np_e2e_{}", hex::encode(raw));
        let out = psql(&admin_url, &format!("CREATE DATABASE {name}"));
        assert_eq!(out.code, 0, "CREATE DATABASE failed: {}", out.stderr);
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (admin_url.as_str(), None),
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
        Some(PgDb {
            admin_url,
            name,
            url,
        })
    }

    /// Runs `sql` in the test database; answers psql's stdout (unaligned, tuples only).
    pub fn query(&self, sql: &str) -> String {
        let out = run(
            Command::new("psql")
                .arg(&self.url)
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .env("PGCONNECT_TIMEOUT", "5"),
            Duration::from_secs(30),
        );
        assert_eq!(out.code, 0, "{sql}: {}", out.stderr);
        out.stdout.trim().to_owned()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}
