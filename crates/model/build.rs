//! The step labels the model's source names literally, `ctx.event("function", "label", ...)`:
//! the universe a search's coverage is measured against (a label computed at run time, as
//! `ctx.event(function, "pmd", ...)`, is not listed, so a report never calls it unreached).

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::Path;

fn main() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    println!("cargo:rerun-if-changed={}", source.display());
    let mut labels = BTreeSet::new();
    scan(&source, &mut labels);
    let mut code = String::from(
        "/// Every (function, label) the model's source names literally in an event, sorted.\npub const STEP_LABELS: &[(&str, &str)] = &[\n",
    );
    for (function, label) in labels {
        writeln!(code, "    ({function:?}, {label:?}),").expect("string write");
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("step_labels.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn scan(directory: &Path, labels: &mut BTreeSet<(String, String)>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(directory).expect("src/ is readable").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            scan(&path, labels);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("a source file");
            for (at, _) in text.match_indices(".event(") {
                if let Some(pair) = literal_pair(&text[at + ".event(".len()..]) {
                    labels.insert(pair);
                }
            }
        }
    }
}

/// `"function", "label"` at the start of `text` (after whitespace), if both are literals.
fn literal_pair(text: &str) -> Option<(String, String)> {
    let (function, rest) = literal(text)?;
    let rest = rest.trim_start().strip_prefix(',')?;
    let (label, _) = literal(rest)?;
    Some((function, label))
}

fn literal(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    let value = &text[..end];
    (!value.contains('\\')).then(|| (value.to_string(), &text[end + 1..]))
}
