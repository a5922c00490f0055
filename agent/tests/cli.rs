//! The np-agent binary's command line: usage errors and config errors name what is wrong
//! and exit 2. (Having an integration test here also makes `cargo test --workspace` build
//! the real binary that the e2e tests in `tests/` run.)

use std::process::Command;

fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_np-agent"))
        .args(args)
        .output()
        .expect("np-agent runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_command_is_bad_usage() {
    let (code, err) = agent(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("frobnicate"), "{err}");
}

#[test]
fn missing_config_names_the_file() {
    let (code, err) = agent(&["--config", "/nonexistent/agent.toml", "status"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/agent.toml"), "{err}");
}

#[test]
fn bad_serial_in_config_names_the_key_and_the_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "serial = \"NR-2000-123456-5\"\nmodel = \"NR-2000\"\nstate_dir = \"s\"\ndevice_key = \"k\"\n[trust]\nroot_keys = []\n",
    )
    .expect("write config");
    let p = path.to_string_lossy().into_owned();
    // --config after the command's name works as well as before it.
    let (code, err) = agent(&["status", "--config", &p]);
    assert_eq!(code, 2);
    assert!(
        err.contains("`serial`") && err.contains("check digit"),
        "{err}"
    );
}
