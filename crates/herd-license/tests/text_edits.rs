//! Licence texts with small edits are still recognised; changed ones are not claimed as the
//! original. The texts are the reference texts (SPDX's and ScanCode's, `licenses/`) and the
//! real files in `../shared`.

mod common;

use herd_license::text::{CLAIM_THRESHOLD, Recognition, recognise, references};

fn id_of(text: &str) -> Option<&'static str> {
    match recognise(text) {
        Recognition::Match { id, .. } | Recognition::Markers { id, .. } => Some(id),
        _ => None,
    }
}

fn reference(id: &str) -> &'static str {
    references().find(|(i, _)| *i == id).unwrap().1
}

fn shared_text(rel: &str) -> String {
    std::fs::read_to_string(common::shared().join(rel)).unwrap()
}

/// Each paragraph re-wrapped to `width` columns, as editors and web pages do.
fn rewrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for para in text.split("\n\n") {
        let mut col = 0;
        for w in para.split_whitespace() {
            if col + w.len() > width {
                out.push('\n');
                col = 0;
            } else if col > 0 {
                out.push(' ');
                col += 1;
            }
            out.push_str(w);
            col += w.len();
        }
        out.push_str("\n\n");
    }
    out
}

#[test]
fn every_reference_survives_rewrapping_and_a_copyright_line() {
    for (id, text) in references() {
        let edited = format!(
            "Copyright (c) 2024 Example Holder, Inc.\n\n{}\n",
            rewrap(text, 61)
        );
        // Re-wrapping can put "copyright" at the start of a line mid-sentence; that must not
        // make a line look like a copyright statement.
        assert_eq!(id_of(&edited), Some(id), "{id}");
        let upper = text.to_uppercase();
        assert_eq!(id_of(&upper), Some(id), "{id} in capitals");
    }
}

#[test]
fn filled_in_placeholders_and_a_changed_holder_are_small_edits() {
    let mit = shared_text("data/gsm8k/LICENSE").replace("2021 OpenAI", "1999 Someone Else");
    assert_eq!(id_of(&mit), Some("MIT"));
    let apache = reference("Apache-2.0").replace(
        "Copyright [yyyy] [name of copyright owner]",
        "Copyright 2023 The herd authors",
    );
    assert_eq!(id_of(&apache), Some("Apache-2.0"));
    let bsd = reference("BSD-3-Clause").replace("the copyright holder", "Google Inc.");
    assert_eq!(id_of(&bsd), Some("BSD-3-Clause"));
}

#[test]
fn apache_without_its_appendix_and_cc_without_preamble_are_recognised() {
    let apache = shared_text("data/mt_bench/LICENSE");
    let cut = apache.find("APPENDIX: How to apply").unwrap();
    assert_eq!(id_of(&apache[..cut]), Some("Apache-2.0"));
    let cc = reference("CC-BY-NC-4.0");
    let start = cc.find("By exercising the Licensed Rights").unwrap();
    let end = cc.find("Creative Commons is not a party").unwrap();
    assert_eq!(id_of(&cc[start..end]), Some("CC-BY-NC-4.0"));
}

#[test]
fn close_relatives_are_told_apart() {
    // CC BY and CC BY-NC are 0.978 alike; Llama 3.1 and 3.2 0.972: the key phrases decide.
    for (id, _) in references() {
        for (other, text) in references() {
            if id != other {
                assert_ne!(id_of(text), Some(id), "{other} claimed as {id}");
            }
        }
    }
}

fn assert_changed(text: &str, original: &str, why_contains: &str) {
    match recognise(text) {
        Recognition::Changed { closest, why, .. } => {
            assert_eq!(closest, original);
            assert!(why.contains(why_contains), "{why}");
        }
        other => panic!("expected a changed {original}, got {other:?}"),
    }
}

#[test]
fn a_restriction_written_into_mit_is_not_mit() {
    let mit = shared_text("data/hh_rlhf_helpful_test/LICENSE").replace(
        "to deal\nin the Software without restriction",
        "to deal\nin the Software for non-commercial purposes only, without restriction",
    );
    assert_changed(&mit, "MIT", "non commercial");
}

#[test]
fn a_changed_grant_clause_is_not_the_original() {
    let mit = reference("MIT").replace("without restriction", "with restriction");
    assert_changed(&mit, "MIT", "is missing or changed");
    let llama = reference("llama2").replace("700 million", "7 million");
    assert_changed(&llama, "llama2", "700 million monthly active users");
}

#[test]
fn a_licence_with_a_section_removed_is_not_the_original() {
    let apache = shared_text("data/self_instruct_seed/LICENSE");
    let start = apache.find("3. Grant of Patent License").unwrap();
    let end = apache.find("4. Redistribution").unwrap();
    let cut = format!("{}{}", &apache[..start], &apache[end..]);
    match recognise(&cut) {
        Recognition::Changed {
            closest,
            similarity,
            ..
        } => {
            assert_eq!(closest, "Apache-2.0");
            assert!(similarity < CLAIM_THRESHOLD, "{similarity}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cc_by_nc_is_never_taken_for_cc_by() {
    // The NonCommercial title written onto CC BY's text: neither CC BY (it adds
    // "noncommercial") nor CC BY-NC (the text lacks BY-NC's clauses).
    let fake = reference("CC-BY-4.0").replacen(
        "Creative Commons Attribution 4.0 International",
        "Creative Commons Attribution-NonCommercial 4.0 International",
        1,
    );
    assert_ne!(id_of(&fake), Some("CC-BY-4.0"));
    assert_ne!(id_of(&fake), Some("CC-BY-NC-4.0"));
}

#[test]
fn licences_without_a_reference_text_are_recognised_by_their_markers() {
    // herd holds no copy of the Meta Llama 3 (April 2024) licence: its title and the
    // user-count clause identify it.
    let llama3 = "META LLAMA 3 COMMUNITY LICENSE AGREEMENT\nMeta Llama 3 Version Release Date: April 18, 2024\n\
        ... If, on the Meta Llama 3 version release date, the monthly active users ... is greater than \
        700 million monthly active users in the preceding calendar month, you must request a license from Meta ...";
    assert!(matches!(
        recognise(llama3),
        Recognition::Markers { id: "llama3", .. }
    ));
    // The title alone is not enough.
    assert_eq!(id_of("META LLAMA 3 COMMUNITY LICENSE AGREEMENT"), None);
}

#[test]
fn unrelated_text_is_unrecognised() {
    let text = shared_text("data/cmmlu/SOURCE.md");
    assert!(matches!(recognise(&text), Recognition::Unrecognised { .. }));
    assert!(matches!(
        recognise(""),
        Recognition::Unrecognised { closest: None }
    ));
}

#[test]
fn the_qwen_research_licence_is_recognised_by_its_markers_and_is_non_commercial() {
    let text = "Qwen RESEARCH LICENSE AGREEMENT\n... You may use the Materials solely for \
        Non-Commercial purposes ...";
    assert!(matches!(
        recognise(text),
        Recognition::Markers {
            id: "qwen-research",
            ..
        }
    ));
    let t = herd_license::catalogue::lookup("qwen-research").unwrap();
    assert_eq!(t.commercial, herd_license::Commercial::NotAllowed);
}
