//! `Reference::parse` on arbitrary UTF-8: no panic, no hang, and a parsed reference prints
//! to a string that parses back to the same reference.

#![no_main]

use hako_image::reference::{familiar, Reference};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(r) = Reference::parse(s) {
        let shown = r.to_string();
        let again =
            Reference::parse(&shown).unwrap_or_else(|e| panic!("{s:?} parsed to {shown:?}, which does not parse: {e}"));
        assert_eq!(again, r, "{s:?} -> {shown:?} does not round-trip");
        assert!(r.tag.is_some() || r.digest.is_some());
        let _ = r.familiar_repository();
        if let Some(k) = r.tag_key() {
            let _ = familiar(&k);
        }
        if let Some(k) = r.digest_key() {
            let _ = familiar(&k);
        }
    }
    let _ = Reference::parse_name_only(s);
    let _ = familiar(s);
});
