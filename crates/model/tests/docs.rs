//! docs/ARCHITECTURE.md's list of the places where kernel versions differ is kept true: every
//! registered change the model branches on (`patched(Patch::X)`) is named in it, and it names
//! no change the model does not branch on.

use mmcheck_model::patches::PATCHES;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("patches.rs") {
            out.push(path);
        }
    }
}

/// The `patched()` list: from its introduction to the paragraph after it.
fn architecture_list() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
    let start = text.find("Today the places are:").expect("the list of patched() places");
    let end = text[start..].find("\n\n").map_or(text.len(), |n| start + n);
    text[start..end].to_string()
}

#[test]
fn architecture_names_every_patched_place_and_no_other() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let code: String = files.iter().map(|f| std::fs::read_to_string(f).expect("a source file")).collect();
    let list = architecture_list();
    for info in PATCHES {
        let used = code.contains(&format!("Patch::{:?})", info.patch));
        let listed = list.contains(&format!("`{}`", info.name));
        assert_eq!(
            used,
            listed,
            "{}: {} in the model's patched() calls but {} in docs/ARCHITECTURE.md's list",
            info.name,
            if used { "used" } else { "not used" },
            if listed { "listed" } else { "not listed" },
        );
    }
}
