//! Measures what matching and rendering cost per event with many routes.
//!
//! Usage: `cargo run --release --example route_cost -- 10000`
//!
//! Builds a config with N routes (one per made-up event type, plus a few
//! wildcard and dotted-path routes that every event must test), then times
//! `Runtime::plan` for a documented event that matches two routes.

use std::time::Instant;

use chrono::Utc;
use pencil_bridge::event::Event;
use pencil_bridge::runtime::Runtime;

/// Events timed after the warm-up.
const ROUNDS: u32 = 20_000;

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join("t.hbs"),
        "{{eventType}} in {{default space.name spaceId}}",
    )
    .unwrap();

    let mut config = String::from(
        "[[secrets]]\nenvironment = \"bench\"\nvalue = \"bench-secret\"\n\
         [templates]\ndir = \"DIR\"\n[destinations.sink]\nkind = \"log\"\n",
    )
    .replace("DIR", &dir.path().display().to_string());
    for index in 0..count {
        config.push_str(&format!(
            "[[routes]]\nname = \"r{index}\"\nwhen = {{ eventType = \"type{index}\" }}\ntemplate = \"t\"\nto = [\"sink\"]\n"
        ));
    }
    config.push_str(
        "[[routes]]\nname = \"recordings\"\nwhen = { eventType = \"RECORDING_AVAILABLE\" }\ntemplate = \"t\"\nto = [\"sink\"]\n\
         [[routes]]\nname = \"wildcard\"\nwhen = { \"space.id\" = \"65*\", environment = \"bench\" }\ntemplate = \"t\"\nto = [\"sink\"]\n",
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();

    let started = Instant::now();
    let runtime = Runtime::load(&path).expect("the bench config loads");
    let load_time = started.elapsed();

    let body = br#"{"_type":"SPACE_RECORDING","eventType":"RECORDING_AVAILABLE","spaceId":"6571f0c2a9e4b1d3c8e0f001","recordingId":"rec_1","timestamp":1733334300000}"#;
    let event = Event::parse(body).unwrap();
    for _ in 0..1_000 {
        assert_eq!(runtime.plan(&event, "bench", Utc::now()).len(), 2);
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(runtime.plan(&event, "bench", Utc::now()));
    }
    let per_event = started.elapsed() / ROUNDS;
    println!("routes: {}", count + 2);
    println!("config load and compile: {load_time:?}");
    println!("match and render per event (2 routes fire): {per_event:?}");
}
