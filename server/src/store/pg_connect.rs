//! The first contact with PostgreSQL at start, explained: connection refused, a failed
//! password, a missing database or no answer each become one sentence
//! ([`StoreError::Connect`]) that names the URL without its password and what to check.

use super::StoreError;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};

/// How long the first connection may take.
const FIRST_CONTACT: Duration = Duration::from_secs(5);

/// `postgres://USER@HOST:PORT/DATABASE` of `config`: never the password.
pub fn shown_url(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("postgres://{user}{host}:{port}/{db}")
}

/// The I/O error under a driver error, if any.
fn io_kind(e: &tokio_postgres::Error) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = s.source();
    }
    None
}

/// Why connecting failed, and what to check, in words.
fn explain(e: &tokio_postgres::Error, config: &Config) -> (String, String) {
    let user = config.get_user().unwrap_or("(none)");
    let db = config.get_dbname().unwrap_or(user);
    let url_words = "the URL given by --store, [store] url or NP_STORE_URL";
    match e.code() {
        Some(c)
            if *c == SqlState::INVALID_PASSWORD
                || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            return (
                format!("authentication failed for user {user}"),
                format!("the user and password in {url_words}, and pg_hba.conf on the server"),
            )
        }
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
            return (
                format!("the database {db} does not exist"),
                format!("the database name in {url_words}, or create it (createdb -O {user} {db})"),
            )
        }
        _ => {}
    }
    if let Some(db_error) = e.as_db_error() {
        return (
            db_error.message().to_owned(),
            format!("{url_words} and the PostgreSQL server's log"),
        );
    }
    let host_port = "that PostgreSQL runs there and accepts TCP connections on that host and port (listen_addresses and port in postgresql.conf)";
    match io_kind(e) {
        Some(std::io::ErrorKind::ConnectionRefused) => {
            ("connection refused".into(), host_port.into())
        }
        Some(std::io::ErrorKind::TimedOut) => (
            "no answer".into(),
            "the host and port, and that no firewall drops the connection".into(),
        ),
        _ => (e.to_string(), host_port.into()),
    }
}

/// Connects once to `url` and hangs up, turning a failure into [`StoreError::Connect`].
/// A URL that does not parse passes (the pool's constructor names it).
pub(super) async fn first_contact(url: &str) -> Result<(), StoreError> {
    let Ok(mut config) = url.parse::<Config>() else {
        return Ok(());
    };
    config.connect_timeout(FIRST_CONTACT);
    let failed = |reason: String, check: String| StoreError::Connect {
        url: shown_url(&config),
        reason,
        check,
    };
    match tokio::time::timeout(FIRST_CONTACT, config.connect(NoTls)).await {
        Err(_) => Err(failed(
            format!("no answer within {} s", FIRST_CONTACT.as_secs()),
            "the host and port, and that no firewall drops the connection".into(),
        )),
        Ok(Err(e)) => {
            let (reason, check) = explain(&e, &config);
            Err(failed(reason, check))
        }
        Ok(Ok((client, connection))) => {
            // Dropping the client ends the connection task cleanly (a Terminate message).
            tokio::spawn(connection);
            drop(client);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shown_url_has_no_password() {
        let config: Config = "postgres://np:s3cret@db.internal:6543/fleet"
            .parse()
            .unwrap();
        assert_eq!(shown_url(&config), "postgres://np@db.internal:6543/fleet");
    }

    #[tokio::test]
    async fn a_refused_connection_is_one_sentence_without_the_password() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let err = first_contact(&format!("postgres://np:s3cret@127.0.0.1:{port}/np"))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{text}");
        assert!(
            text.contains(&format!("postgres://np@127.0.0.1:{port}/np")),
            "{text}"
        );
        assert!(text.contains("connection refused"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[tokio::test]
    async fn a_wrong_password_and_a_missing_database_are_named() {
        let Some(db) = crate::store::contract_tests::TestDb::create().await else {
            return;
        };
        let mut config: Config = db.url.parse().unwrap();
        let user = config.get_user().unwrap().to_owned();
        let host = "127.0.0.1";
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let name = config.get_dbname().unwrap().to_owned();
        let wrong = format!("postgres://{user}:wrong-password@{host}:{port}/{name}");
        let text = first_contact(&wrong).await.unwrap_err().to_string();
        assert!(text.contains("authentication failed"), "{text}");
        assert!(!text.contains("wrong-password"), "{text}");
        config.dbname("np_no_such_database");
        let missing = db.url.replace(&name, "np_no_such_database");
        let text = first_contact(&missing).await.unwrap_err().to_string();
        assert!(
            text.contains("the database np_no_such_database does not exist"),
            "{text}"
        );
        assert!(first_contact(&db.url).await.is_ok());
    }
}
