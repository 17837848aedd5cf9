//! The `check` and `render` commands, run as the built binary.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{copy_shipped_templates, sample, BRIDGE_BINARY};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `pencil-bridge` with `args` in the repository root.
fn run_bridge(args: &[&str]) -> Output {
    Command::new(BRIDGE_BINARY)
        .args(args)
        .current_dir(MANIFEST_DIR)
        .output()
        .expect("run pencil-bridge")
}

/// Writes `config` as `config.toml` in `dir`, next to a copy of the
/// shipped templates, and returns its path as text.
fn write_config(dir: &Path, config: &str) -> String {
    copy_shipped_templates(&dir.join("templates"));
    let path = dir.join("config.toml");
    std::fs::write(&path, config).expect("write config");
    path.to_str().expect("a UTF-8 path").to_owned()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_accepts_example_config() {
    let output = run_bridge(&["check", "--config", "config.toml.example"]);
    assert!(output.status.success(), "stderr: {}", stderr_of(&output));
}

/// The value given to both secrets of the faulty config.
const SHARED_SECRET: &str = "shared-secret-9d1e";

#[test]
fn check_names_every_problem() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = format!(
        r#"
[store]
url = "sqlite://{db}"

[[secrets]]
environment = "production"
value = "{SHARED_SECRET}"

[[secrets]]
environment = "staging"
value = "{SHARED_SECRET}"

[destinations.console]
kind = "log"

[destinations.archive]
kind = "webhook"
url = "ftp://files.example.org/archive"

[[routes]]
name = "to-nowhere"
template = "generic"
to = ["nowhere"]

[[routes]]
name = "no-template"
template = "no_such_template"
to = ["console"]
"#,
        db = dir.path().join("bridge.db").display(),
    );
    let config_path = write_config(dir.path(), &config);
    std::fs::write(
        dir.path().join("templates").join("broken.hbs"),
        "line one\n{{#if x}}never closed\n",
    )
    .expect("write broken template");

    let output = run_bridge(&["check", "--config", &config_path]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("unknown destination \"nowhere\""),
        "unknown destination not named: {stderr}"
    );
    assert!(
        stderr.contains("no_such_template"),
        "missing template not named: {stderr}"
    );
    assert!(
        stderr.contains("broken.hbs"),
        "broken template file not named: {stderr}"
    );
    assert!(
        stderr.contains("syntax error"),
        "template syntax error not described: {stderr}"
    );
    assert!(
        stderr.contains("same value"),
        "duplicate secret not named: {stderr}"
    );
    assert!(
        stderr.contains("destinations.archive.url is not an http(s) URL"),
        "non-http URL not named: {stderr}"
    );
    assert!(
        !stderr.contains(SHARED_SECRET),
        "stderr shows the secret: {stderr}"
    );
}

#[test]
fn check_names_unknown_config_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = "[server]\nlisen = \"127.0.0.1:8080\"\n\n[[secrets]]\nenvironment = \"production\"\nvalue = \"s\"\n";
    let config_path = write_config(dir.path(), config);

    let output = run_bridge(&["check", "--config", &config_path]);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("server.lisen"), "stderr: {stderr}");
}

/// The part of the Slack webhook URL that is its credential.
const URL_SECRET: &str = "SECRETPART";

#[test]
fn render_shows_route_and_body_without_url_secret() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = format!(
        r#"
[store]
url = "sqlite://{db}"

[[secrets]]
environment = "production"
value = "render-secret"

[destinations.tutors]
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/{URL_SECRET}"

[[routes]]
name = "recordings"
when = {{ eventType = "RECORDING_AVAILABLE" }}
template = "recording_available"
to = ["tutors"]
"#,
        db = dir.path().join("bridge.db").display(),
    );
    let config_path = write_config(dir.path(), &config);

    let output = run_bridge(&[
        "render",
        "--event",
        "samples/RECORDING_AVAILABLE.json",
        "--config",
        &config_path,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "stderr: {stderr}");
    assert!(
        stdout.contains("route recordings -> destination tutors"),
        "stdout: {stdout}"
    );
    assert!(stdout.contains("\"text\":"), "no body in stdout: {stdout}");

    let recording: serde_json::Value =
        serde_json::from_str(&sample("RECORDING_AVAILABLE.json")).expect("sample");
    let recording_id = recording["recordingId"].as_str().expect("recordingId");
    assert!(stdout.contains(recording_id), "stdout: {stdout}");
    assert!(!stdout.contains(URL_SECRET), "stdout shows the URL secret");
    assert!(!stderr.contains(URL_SECRET), "stderr shows the URL secret");
}

/// Builds a valid config with one log destination, followed by `routes`.
fn log_config(routes: &str) -> String {
    format!(
        "[[secrets]]\nenvironment = \"production\"\nvalue = \"s\"\n\
         [destinations.console]\nkind = \"log\"\n{routes}"
    )
}

#[test]
fn check_warns_about_misspelt_route_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let routes = "[[routes]]\nname = \"joins\"\nwhen = { eventTyp = \"joinSpace\" }\n\
                  template = \"join_space\"\nto = [\"console\"]\n";
    let config = write_config(dir.path(), &log_config(routes));
    let output = run_bridge(&["check", "--config", &config]);
    let stderr = stderr_of(&output);

    assert!(output.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("warning: route \"joins\""),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("\"eventTyp\""), "stderr: {stderr}");
}

#[test]
fn template_syntax_error_is_reported_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let routes = "[[routes]]\nname = \"joins\"\nwhen = { eventType = \"joinSpace\" }\n\
                  template = \"join_space\"\nto = [\"console\"]\n";
    let config = write_config(dir.path(), &log_config(routes));
    let broken = dir.path().join("templates").join("join_space.log.hbs");
    std::fs::write(broken, "{{#if user}}unclosed").expect("break a template");
    let output = run_bridge(&["check", "--config", &config]);
    let stderr = stderr_of(&output);

    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("join_space.log.hbs: syntax error"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("no template"), "stderr: {stderr}");
    assert!(stderr.contains("1 problem(s)"), "stderr: {stderr}");
}

#[test]
fn deliveries_list_refuses_missing_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = write_config(dir.path(), &log_config(""));
    let output = run_bridge(&["deliveries", "list", "--config", &config]);
    let stderr = stderr_of(&output);

    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("no store at"), "stderr: {stderr}");
    assert!(!dir.path().join("pencil-bridge.db").exists());
}

#[test]
fn check_reports_helper_error_in_any_template_name() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let routes = "[[routes]]\nname = \"joins\"\nwhen = { eventType = \"joinSpace\" }\n\
                  template = \"empty_seat\"\nto = [\"console\"]\n";
    let config = write_config(dir.path(), &log_config(routes));
    let template = dir.path().join("templates").join("empty_seat.hbs");
    std::fs::write(template, "{{format_time time \"%Q\"}}").expect("write template");
    let output = run_bridge(&["check", "--config", &config]);
    let stderr = stderr_of(&output);

    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("invalid strftime format"),
        "stderr: {stderr}"
    );
}
