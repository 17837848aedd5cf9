//! Serde support for durations written as `"30s"`, `"10m"`, `"24h"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(text.trim()).map_err(|err| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?} ({err}); write it like \"30s\", \"10m\" or \"24h\""
        ))
    })
}
