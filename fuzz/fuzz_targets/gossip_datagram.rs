//! Gossip datagrams: opening arbitrary packets (forged, truncated, from another cluster) and
//! handing authenticated plaintext to foca as the receive loop does. Sealing then opening gives
//! the plaintext back; any single flipped bit makes the packet fail authentication.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_gossip::fuzzing;

fuzz_target!(|data: &[u8]| {
    // Raw bytes off the wire: they do not authenticate (forging AES-GCM is out of reach).
    assert!(!fuzzing::receive(data));
    // The same bytes as the plaintext of a genuine packet: foca decodes them without panicking.
    let sealed = fuzzing::seal(data);
    assert_eq!(fuzzing::open(&sealed).as_deref(), Some(data));
    assert!(fuzzing::receive(&sealed));
    if !sealed.is_empty() {
        let mut tampered = sealed.clone();
        let bit = data.first().copied().unwrap_or(0) as usize % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        assert!(fuzzing::open(&tampered).is_none());
    }
});
