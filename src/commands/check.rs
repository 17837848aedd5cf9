//! `check`: validate the config, compile templates and render the samples.

use std::path::Path;

use crate::runtime::Runtime;

/// Prints every problem and returns false when there is any.
pub fn run(config_path: &Path) -> bool {
    let runtime = match Runtime::load(config_path) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{err}");
            return false;
        }
    };
    for warning in runtime.unknown_route_keys() {
        eprintln!("warning: {warning}");
    }
    let problems = runtime.check_samples();
    if !problems.is_empty() {
        eprintln!("{}: {} problem(s):", config_path.display(), problems.len());
        for problem in &problems {
            eprintln!("  - {problem}");
        }
        return false;
    }
    println!(
        "{}: OK ({} routes, {} destinations, {} secrets; every route rendered against the samples)",
        config_path.display(),
        runtime.router.routes().len(),
        runtime.config.destinations.len(),
        runtime.config.secrets.len()
    );
    true
}
