//! Several `np-server` replicas on one PostgreSQL database: a data folder made with
//! `init --store-file` (the password stays off the command line), copies of it for other
//! replicas (never the offline root key), and the usual pair of replicas, A and B, that
//! share one blob folder.

use crate::pg::PgDb;
use crate::server::TestServer;
use crate::{bin, run};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

/// Copies a data folder for another replica, leaving out the offline root key.
pub fn copy_data(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy folder made");
    for entry in std::fs::read_dir(from).expect("data folder read") {
        let entry = entry.expect("data folder read");
        let name = entry.file_name();
        if name == "offline" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_data(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("file copied");
        }
    }
}

/// What `init` printed: the first admin token and the root public key.
pub struct Init {
    /// The first admin token.
    pub token: String,
    /// The root public key (base64).
    pub root: String,
}

/// Writes `url` into a 0600 file `path`, as an operator gives it to `--store-file`.
pub fn write_url_file(path: &Path, url: &str) {
    std::fs::write(path, format!("{url}\n")).expect("URL file written");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .expect("URL file mode set");
    }
}

/// `np-server init --data DATA --store-file FILE` (FILE holding `url`, beside DATA).
pub fn init_on_postgres(data: &Path, url: &str) -> Init {
    let file = data.with_extension("store-url");
    write_url_file(&file, url);
    let out = run(
        Command::new(bin("np-server"))
            .args(["init", "--data"])
            .arg(data)
            .arg("--store-file")
            .arg(&file)
            .env_remove("NP_STORE_URL"),
        T,
    );
    assert_eq!(out.code, 0, "init: {}", out.stderr);
    let value = |prefix: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {}", out.stdout))
            .trim()
            .to_owned()
    };
    Init {
        token: value("admin token: "),
        root: value("root public key: "),
    }
}

/// Two replicas on `db`: A with `--store`, B with `[store] url` in its server.toml
/// (and a copy of the data folder); both with the same `[blobs] dir` (`TMP/blobs`).
pub fn two_replicas(db: &PgDb, tmp: &Path) -> (TestServer, TestServer) {
    let data_a = tmp.join("data-a");
    let init = init_on_postgres(&data_a, &db.url);
    assert!(
        !data_a.join("tokens.json").exists() && !data_a.join("store").exists(),
        "with a PostgreSQL store the folder holds only keys"
    );
    let data_b = tmp.join("data-b");
    copy_data(&data_a, &data_b);
    // A configured blob folder must exist (as a shared mount does): /healthz checks it.
    let blobs = tmp.join("blobs");
    std::fs::create_dir_all(&blobs).expect("blob folder made");
    let toml_a = tmp.join("a.toml");
    std::fs::write(
        &toml_a,
        format!(
            "data = {:?}\n[blobs]\ndir = {:?}\n",
            data_a.display().to_string(),
            blobs.display().to_string()
        ),
    )
    .expect("server.toml written");
    let toml_b = tmp.join("b.toml");
    std::fs::write(
        &toml_b,
        format!(
            "data = {:?}\n[store]\nurl = {:?}\n[blobs]\ndir = {:?}\n",
            data_b.display().to_string(),
            db.url,
            blobs.display().to_string()
        ),
    )
    .expect("server.toml written");
    let a = TestServer::with_args(
        &[
            "--config".as_ref(),
            toml_a.as_os_str(),
            "--store".as_ref(),
            db.url.as_ref(),
        ],
        &init.token,
        &init.root,
        &data_a,
    );
    let b = TestServer::with_args(
        &["--config".as_ref(), toml_b.as_os_str()],
        &init.token,
        &init.root,
        &data_b,
    );
    (a, b)
}
