//! Catalogue commands as a Raft log entry carries them (JSON), one per line, applied in order to
//! a fresh catalogue: decoding and `Catalogue::apply` never panic, a command survives the
//! encode/decode round trip, and the catalogue after each step survives a snapshot round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_raft::catalogue::{Catalogue, Command};

fuzz_target!(|data: &[u8]| {
    let mut cat = Catalogue::default();
    for line in data.split(|b| *b == b'\n').take(32) {
        let Ok(cmd) = serde_json::from_slice::<Command>(line) else { continue };
        let v = serde_json::to_value(&cmd).expect("a command encodes");
        let back: Command = serde_json::from_value(v).expect("its encoding decodes");
        assert_eq!(back, cmd);
        let _ = cat.apply(cmd);
        let snap = serde_json::to_value(&cat).expect("a catalogue encodes");
        let mut restored: Catalogue = serde_json::from_value(snap).expect("a snapshot decodes");
        restored.reindex();
        assert_eq!(restored.namespaces, cat.namespaces);
        assert_eq!(restored.keys, cat.keys);
        assert_eq!(restored.sessions, cat.sessions);
    }
});
