//! Sample events of every documented type, built into the binary for
//! `check` and `send-test`.

/// File name and body of each sample.
pub const SAMPLES: [(&str, &str); 7] = [
    ("joinSpace.json", include_str!("../samples/joinSpace.json")),
    (
        "leaveSpace.json",
        include_str!("../samples/leaveSpace.json"),
    ),
    ("hideTab.json", include_str!("../samples/hideTab.json")),
    ("unhideTab.json", include_str!("../samples/unhideTab.json")),
    (
        "SESSION_ENDED.json",
        include_str!("../samples/SESSION_ENDED.json"),
    ),
    (
        "RECORDING_AVAILABLE.json",
        include_str!("../samples/RECORDING_AVAILABLE.json"),
    ),
    (
        "TRANSCRIPT_AVAILABLE.json",
        include_str!("../samples/TRANSCRIPT_AVAILABLE.json"),
    ),
];
