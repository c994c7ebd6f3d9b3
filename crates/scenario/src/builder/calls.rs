//! The calls a scenario's statement can make, one function each: the table the builder looks a
//! call up in, and each call's checks of its arguments and its instruction.

use super::{diagnostic, evaluate, evaluate_constant_in, Builder};
use crate::parser::limits::*;
use crate::parser::{Call, Expr};
use crate::Diagnostic;
use mmcheck_model::fs::proc::page::ProcPageFile;
use mmcheck_model::fs::proc::task_mmu::SmapsField;
use mmcheck_model::mm::userfaultfd::UFFD_API;
use mmcheck_model::program::{map, mremap, prot, Advice, Instruction, Operand};
use std::collections::BTreeMap;

/// Where a call may be made: a system call needs a process; the others check for themselves
/// (reclaim and split_huge_pages run in a kernel thread).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RunsIn {
    Process,
    Anywhere,
}

/// One call of the language.
struct CallDef {
    name: &'static str,
    runs_in: RunsIn,
    /// Whether `x = call(...)` may keep a result.
    returns: bool,
    build: fn(&mut Builder, &mut Site) -> Result<Instruction, Diagnostic>,
}

/// Every call a statement can make, in the order docs/SCENARIOS.md lists them.
const CALLS: &[CallDef] = &[
    CallDef { name: "mmap", runs_in: RunsIn::Process, returns: true, build: mmap },
    CallDef { name: "mremap", runs_in: RunsIn::Process, returns: true, build: mremap },
    CallDef { name: "mprotect", runs_in: RunsIn::Process, returns: true, build: mprotect },
    CallDef { name: "munmap", runs_in: RunsIn::Process, returns: true, build: munmap },
    CallDef { name: "store", runs_in: RunsIn::Process, returns: false, build: store },
    CallDef { name: "madvise", runs_in: RunsIn::Process, returns: true, build: madvise },
    CallDef { name: "pread", runs_in: RunsIn::Process, returns: true, build: pread },
    CallDef { name: "ftruncate", runs_in: RunsIn::Process, returns: true, build: ftruncate },
    CallDef { name: "userfaultfd", runs_in: RunsIn::Process, returns: true, build: userfaultfd },
    CallDef { name: "uffdio_api", runs_in: RunsIn::Process, returns: true, build: uffdio_api },
    CallDef { name: "uffdio_register", runs_in: RunsIn::Process, returns: true, build: uffdio_register },
    CallDef { name: "uffd_read", runs_in: RunsIn::Process, returns: true, build: uffd_read },
    CallDef { name: "uffdio_copy", runs_in: RunsIn::Process, returns: true, build: uffdio_copy },
    CallDef { name: "uffdio_zeropage", runs_in: RunsIn::Process, returns: true, build: uffdio_zeropage },
    CallDef { name: "uffdio_move", runs_in: RunsIn::Process, returns: true, build: uffdio_move },
    CallDef { name: "move_pages", runs_in: RunsIn::Process, returns: true, build: move_pages },
    CallDef { name: "pagemap", runs_in: RunsIn::Process, returns: true, build: pagemap },
    CallDef { name: "kpagecount", runs_in: RunsIn::Process, returns: true, build: pagemap },
    CallDef { name: "kpageflags", runs_in: RunsIn::Process, returns: true, build: pagemap },
    CallDef { name: "smaps", runs_in: RunsIn::Process, returns: true, build: smaps },
    CallDef { name: "split_huge_pages", runs_in: RunsIn::Anywhere, returns: false, build: split_huge_pages },
    CallDef { name: "reclaim", runs_in: RunsIn::Anywhere, returns: false, build: reclaim },
];

/// Where the builder meets a call: the call, the process it runs in (none in a kernel thread),
/// the scope's variables and the variable its result is assigned to.
pub(super) struct Site<'s> {
    pub call: &'s Call,
    pub mm: Option<u32>,
    pub variables: &'s mut BTreeMap<String, u16>,
    pub destination: Option<&'s str>,
    /// How many times the statement runs the instruction (reclaim's `passes`); 1 otherwise.
    pub repeat: u32,
}

impl Site<'_> {
    /// The register of the assigned variable (`x = call(...)`), new at its first assignment.
    fn define(&mut self) -> Option<u16> {
        let next = self.variables.len() as u16;
        self.destination.map(|name| *self.variables.entry(name.to_string()).or_insert(next))
    }
}

impl Builder<'_> {
    /// A call's instruction: looked up in [`CALLS`], checked where it runs and whether its
    /// result may be kept, then built by the call's own function.
    pub(super) fn call(&mut self, site: &mut Site) -> Result<Instruction, Diagnostic> {
        let call = site.call;
        if call.name == "load" {
            return Err(diagnostic("a load is checked in an assertion: `assert load(buf, 4K) == 0x79`", call.span));
        }
        let Some(def) = CALLS.iter().find(|def| def.name == call.name) else {
            let names: Vec<&str> = CALLS.iter().map(|def| def.name).collect();
            return Err(diagnostic(format!("unknown call `{}`", call.name), call.span)
                .with_note(format!("calls: {}; `assert load(...) == byte`", names.join(", "))));
        };
        if site.destination.is_some() && !def.returns {
            return Err(diagnostic(format!("`{}` returns nothing to assign", call.name), call.span));
        }
        if def.runs_in == RunsIn::Process {
            self.require_process(site.mm, call)?;
        }
        (def.build)(self, site)
    }
}

fn mmap(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let (device, file) = match call.arguments.get(3) {
        Some(expr) => b.mapped_object(expr)?,
        None => (None, None),
    };
    let arguments = Call { arguments: call.arguments[..call.arguments.len().min(3)].to_vec(), ..call.clone() };
    let usage =
        "mmap(length, read|write, private|anonymous) or mmap(length, read|write, private|shared, DEVICE or FILE)";
    if call.arguments.len() > 4 {
        return Err(diagnostic(format!("`mmap` takes 3 or 4 arguments: {usage}"), call.span));
    }
    let call = &arguments;
    let [length, protection, flags] = b.arguments::<3>(call, usage)?;
    let length = b.range_length(length, site.variables)?;
    let prot = b.flags(protection, &[("read", prot::PROT_READ), ("write", prot::PROT_WRITE), ("none", 0)])?;
    let flags_value = b.flags(
        flags,
        &[("private", map::MAP_PRIVATE), ("shared", map::MAP_SHARED), ("anonymous", map::MAP_ANONYMOUS)],
    )?;
    let what = if device.is_some() { "a device mapping" } else { "a file mapping" };
    let wanted = match device.or(file) {
        Some(_) if flags_value == map::MAP_SHARED || flags_value == map::MAP_PRIVATE => flags_value,
        Some(_) => return Err(diagnostic(format!("{what} is `private` or `shared`"), flags.span())),
        None => map::MAP_PRIVATE | map::MAP_ANONYMOUS,
    };
    if flags_value != wanted {
        return Err(diagnostic("not modelled yet: only private|anonymous mappings", flags.span()));
    }
    let Some(dst) = site.define() else {
        return Err(diagnostic("mmap's address must be kept: `buf = mmap(...)`", call.span));
    };
    Ok(Instruction::Mmap { dst, length, prot, flags: flags_value, device, file })
}

fn mremap(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let usage = "mremap(address, old_length, new_length, none|maymove|maymove|fixed [, new_address])";
    if !(4..=5).contains(&call.arguments.len()) {
        return Err(diagnostic(format!("`mremap` takes 4 or 5 arguments: {usage}"), call.span));
    }
    let address = evaluate(&call.arguments[0], b.parameters, site.variables)?;
    let old_length = b.range_length(&call.arguments[1], site.variables)?;
    let new_length = b.range_length(&call.arguments[2], site.variables)?;
    let flags = b.flags(
        &call.arguments[3],
        &[("none", 0), ("maymove", mremap::MREMAP_MAYMOVE), ("fixed", mremap::MREMAP_FIXED)],
    )?;
    let new_address = match call.arguments.get(4) {
        Some(expr) => evaluate(expr, b.parameters, site.variables)?,
        None => Operand::Constant(0),
    };
    Ok(Instruction::Mremap { dst: site.define(), address, old_length, new_length, flags, new_address })
}

fn mprotect(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address, length, protection] = b.arguments::<3>(call, "mprotect(address, length, read|write|none)")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let length = b.range_length(length, site.variables)?;
    let prot = b.flags(protection, &[("read", prot::PROT_READ), ("write", prot::PROT_WRITE), ("none", 0)])?;
    Ok(Instruction::Mprotect { dst: site.define(), address, length, prot })
}

fn munmap(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address, length] = b.arguments::<2>(call, "munmap(address, length)")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let length = b.range_length(length, site.variables)?;
    Ok(Instruction::Munmap { dst: site.define(), address, length })
}

fn store(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address, length, byte] = b.arguments::<3>(call, "store(address, length, byte)")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    Ok(Instruction::Store {
        address,
        length: b.length(length, site.variables)?,
        byte: b.byte(byte, site.variables)?,
        location: b.location(call.span),
    })
}

fn madvise(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address, length, advice] = b.arguments::<3>(
        call,
        "madvise(address, length, free|dontneed|cold|pageout|hugepage|populate_read|populate_write|wipeonfork|keeponfork)",
    )?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let length = b.range_length(length, site.variables)?;
    let (name, span) = b.name_argument(
        advice,
        "an advice: free, dontneed, cold, pageout, hugepage, populate_read, populate_write, wipeonfork, keeponfork",
    )?;
    let advice = match name {
        "free" => Advice::Free,
        "dontneed" => Advice::DontNeed,
        "cold" => Advice::Cold,
        "pageout" => Advice::PageOut,
        "hugepage" => Advice::HugePage,
        "populate_read" => Advice::PopulateRead,
        "populate_write" => Advice::PopulateWrite,
        "wipeonfork" => Advice::WipeOnFork,
        "keeponfork" => Advice::KeepOnFork,
        _ => return Err(diagnostic(format!("unknown advice `{name}`"), span).with_note(
            "advice: free, dontneed, cold, pageout, hugepage, populate_read, populate_write, wipeonfork, keeponfork",
        )),
    };
    Ok(Instruction::Madvise { dst: site.define(), address, length, advice })
}

fn pread(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [file, buffer, length, offset, mode] =
        b.arguments::<5>(call, "pread(file, buffer, length, offset, direct|buffered)")?;
    let (file_name, file_span) = b.name_argument(file, "a file declared with `file`")?;
    let Some(&file) = b.files.get(file_name) else {
        return Err(diagnostic(format!("unknown file `{file_name}`"), file_span));
    };
    let buffer = evaluate(buffer, b.parameters, site.variables)?;
    let length = b.range_length(length, site.variables)?;
    let offset = evaluate_constant_in(offset, b.parameters, site.variables)?;
    let (mode_name, mode_span) = b.name_argument(mode, "`direct` or `buffered`")?;
    let direct = match mode_name {
        "direct" => true,
        "buffered" => false,
        _ => return Err(diagnostic("expected `direct` (O_DIRECT) or `buffered`", mode_span)),
    };
    Ok(Instruction::Pread { dst: site.define(), file, buffer, length, offset: offset as u64, direct })
}

fn ftruncate(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [file, length] = b.arguments::<2>(call, "ftruncate(file, length)")?;
    let (file_name, file_span) = b.name_argument(file, "a file declared with `file`")?;
    let Some(&file) = b.files.get(file_name) else {
        return Err(diagnostic(format!("unknown file `{file_name}`"), file_span));
    };
    let value = evaluate_constant_in(length, b.parameters, site.variables)?;
    if value > SIZE_BYTES_MAX {
        return Err(diagnostic(format!("a file is at most 1024G (1 TiB; this is {value} bytes)"), length.span()));
    }
    if value < 0 || value % 4096 != 0 {
        return Err(diagnostic(
            format!("not modelled yet: a truncation to {value} bytes (a multiple of 4K, to shrink)"),
            length.span(),
        ));
    }
    Ok(Instruction::Ftruncate { dst: site.define(), file, length: value as u64 })
}

fn userfaultfd(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    b.arguments::<0>(call, "userfaultfd()")?;
    Ok(Instruction::Userfaultfd { dst: site.define() })
}

fn uffdio_api(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let (uffd, api) = match call.arguments.as_slice() {
        [uffd] => (uffd, UFFD_API),
        [uffd, api] => (uffd, evaluate_constant_in(api, b.parameters, site.variables)? as u64),
        _ => return Err(diagnostic("expected uffdio_api(uffd) or uffdio_api(uffd, api number)", call.span)),
    };
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    Ok(Instruction::UffdioApi { dst: site.define(), uffd, api })
}

fn uffdio_register(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [uffd, address, length] = b.arguments::<3>(call, "uffdio_register(uffd, address, length): missing mode")?;
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let length = b.range_length(length, site.variables)?;
    Ok(Instruction::UffdioRegister { dst: site.define(), uffd, address, length })
}

fn uffd_read(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [uffd] = b.arguments::<1>(call, "uffd_read(uffd): the address of the next page fault")?;
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    Ok(Instruction::UffdRead { dst: site.define(), uffd })
}

fn uffdio_copy(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [uffd, to, from, length] = b.arguments::<4>(call, "uffdio_copy(uffd, dst, src, length)")?;
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    let to = evaluate(to, b.parameters, site.variables)?;
    let from = Some(evaluate(from, b.parameters, site.variables)?);
    let length = b.length(length, site.variables)?;
    Ok(Instruction::UffdioFill { dst: site.define(), uffd, to, from, length })
}

fn uffdio_zeropage(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [uffd, to, length] = b.arguments::<3>(call, "uffdio_zeropage(uffd, dst, length)")?;
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    let to = evaluate(to, b.parameters, site.variables)?;
    let length = b.length(length, site.variables)?;
    Ok(Instruction::UffdioFill { dst: site.define(), uffd, to, from: None, length })
}

fn uffdio_move(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let usage = "uffdio_move(uffd, dst, src, length) or uffdio_move(uffd, dst, src, length, allow_src_holes)";
    let allow_src_holes = match call.arguments.get(4) {
        Some(expr) => {
            let (name, span) = b.name_argument(expr, "`allow_src_holes`")?;
            if name != "allow_src_holes" {
                return Err(diagnostic("the only UFFDIO_MOVE mode is `allow_src_holes`", span));
            }
            true
        }
        None => false,
    };
    if call.arguments.len() > 5 {
        return Err(diagnostic(format!("`uffdio_move` takes 4 or 5 arguments: {usage}"), call.span));
    }
    let trimmed = Call { arguments: call.arguments[..call.arguments.len().min(4)].to_vec(), ..call.clone() };
    let [uffd, to, from, length] = b.arguments::<4>(&trimmed, usage)?;
    let uffd = evaluate(uffd, b.parameters, site.variables)?;
    let to = evaluate(to, b.parameters, site.variables)?;
    let from = evaluate(from, b.parameters, site.variables)?;
    let length = b.length(length, site.variables)?;
    Ok(Instruction::UffdioMove { dst: site.define(), uffd, to, from, length, allow_src_holes })
}

fn move_pages(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address] = b.arguments::<1>(call, "move_pages(address): status[0] of a status query")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    Ok(Instruction::MovePagesStatus { dst: site.define(), address })
}

fn pagemap(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address] = b.arguments::<1>(call, "pagemap(address), kpagecount(address) or kpageflags(address)")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let file = match call.name.as_str() {
        "pagemap" => ProcPageFile::Pagemap,
        "kpagecount" => ProcPageFile::KpageCount,
        _ => ProcPageFile::KpageFlags,
    };
    Ok(Instruction::ProcPage { dst: site.define(), address, file })
}

fn smaps(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let [address, field] = b.arguments::<2>(call, "smaps(address, FIELD)")?;
    let address = evaluate(address, b.parameters, site.variables)?;
    let (name, span) = b.name_argument(field, "an smaps field such as Rss or Anonymous")?;
    let Some(field) = SmapsField::by_name(name) else {
        let fields: Vec<&str> = SmapsField::ALL.iter().map(|(n, _)| *n).collect();
        return Err(diagnostic(format!("unknown smaps field `{name}`"), span)
            .with_note(format!("fields: {}", fields.join(", "))));
    };
    Ok(Instruction::Smaps { dst: site.define(), address, field })
}

fn split_huge_pages(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let mm = site.mm;
    if mm.is_some() {
        return Err(diagnostic(
                "split_huge_pages is the debugfs file a kernel thread writes (`kthread splitter { split_huge_pages(all) }`)",
                call.span,
            ));
    }
    let [what] = b.arguments::<1>(call, "split_huge_pages(all)")?;
    let (name, span) = b.name_argument(what, "`all`")?;
    if name != "all" {
        return Err(diagnostic("only `split_huge_pages(all)` (split_huge_pages_all) is modelled", span));
    }
    Ok(Instruction::SplitHugePages)
}

fn reclaim(b: &mut Builder, site: &mut Site) -> Result<Instruction, Diagnostic> {
    let call = site.call;
    let mm = site.mm;
    if mm.is_some() {
        return Err(diagnostic("reclaim runs in a kernel thread (`kthread kswapd { reclaim(all) }`)", call.span));
    }
    let usage = "reclaim(all) or reclaim(all, passes = N)";
    let (scope, passes) = match call.arguments.as_slice() {
        [scope] => (scope, None),
        [scope, Expr::Named(name, value, span)] if name == "passes" => (scope, Some((value, *span))),
        [_, other] => return Err(diagnostic(format!("expected `passes = N` here: {usage}"), other.span())),
        _ => return Err(diagnostic(format!("`reclaim` takes 1 or 2 arguments: {usage}"), call.span)),
    };
    let (scope, span) = b.name_argument(scope, "`all`")?;
    if scope != "all" {
        return Err(diagnostic("only `reclaim(all)` is modelled", span));
    }
    // kswapd's balance_pgdat() scans again while the node is not balanced: each pass is one
    // more shrink of the inactive lists, so a folio a pass kept (referenced once) meets the next.
    if let Some((value, span)) = passes {
        let passes = evaluate_constant_in(value, b.parameters, site.variables)?;
        if !(1..=RECLAIM_PASSES_MAX as i64).contains(&passes) {
            return Err(diagnostic(format!("`passes` is 1 to {RECLAIM_PASSES_MAX}"), span));
        }
        site.repeat = passes as u32;
    }
    Ok(Instruction::Reclaim)
}
