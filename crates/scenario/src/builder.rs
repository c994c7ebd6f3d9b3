//! The builder: a parsed scenario's AST and parameter values into the model's system (threads,
//! programs, files, devices), checking every value against the model's limits.

mod calls;

use crate::parser::limits::*;
use crate::parser::{Ast, Call, Cond, DeviceDecl, Expr, Span, Statement, ThreadDecl};
use crate::{filled_file, Diagnostic};
use mmcheck_model::drivers::{DeviceKind, DeviceSpec};
use mmcheck_model::folio::PAGE_SIZE;
use mmcheck_model::program::{Comparison, Condition, Instruction, Operand, SourceLocation};
use mmcheck_model::thread::errno;
use mmcheck_model::{SystemSpec, ThreadSpec};
use std::collections::BTreeMap;

pub(crate) fn diagnostic(message: impl Into<String>, span: Span) -> Diagnostic {
    Diagnostic::new(message, span.0, span.1.max(span.0 + 1))
}

pub(crate) fn evaluate_constant(expr: &Expr, parameters: &BTreeMap<String, i64>) -> Result<i64, Diagnostic> {
    evaluate_constant_in(expr, parameters, &BTreeMap::new())
}

/// A constant where variables are known: a variable gets "a constant is needed here".
pub(crate) fn evaluate_constant_in(
    expr: &Expr,
    parameters: &BTreeMap<String, i64>,
    variables: &BTreeMap<String, u16>,
) -> Result<i64, Diagnostic> {
    match evaluate(expr, parameters, variables)? {
        Operand::Constant(value) => Ok(value),
        Operand::Register(..) => Err(diagnostic("expected a constant here, not a variable", expr.span())),
    }
}

/// Evaluates an expression: parameters are constants, variables are registers; a register may
/// only be offset by constants (`buf + 4K`).
pub(crate) fn evaluate(
    expr: &Expr,
    parameters: &BTreeMap<String, i64>,
    variables: &BTreeMap<String, u16>,
) -> Result<Operand, Diagnostic> {
    match expr {
        Expr::Number(value, _) => Ok(Operand::Constant(*value)),
        Expr::Name(name, span) => {
            if let Some(value) = parameters.get(name) {
                return Ok(Operand::Constant(*value));
            }
            if let Some(register) = variables.get(name) {
                return Ok(Operand::Register(*register, 0));
            }
            if let Some(value) = errno::by_name(name).or_else(|| proc_constant(name)) {
                return Ok(Operand::Constant(value));
            }
            Err(diagnostic(format!("unknown name `{name}`"), *span).with_note(
                "names are parameters (`param`), variables assigned earlier in the process (`x = mmap(...)`) or errno names (`-ENOENT`)",
            ))
        }
        Expr::Flags(_, span) => Err(diagnostic("flags are not a value here", *span)),
        Expr::Named(name, _, span) => {
            Err(diagnostic(format!("`{name} = ...` names an optional argument; it is not a value"), *span))
        }
        Expr::Binary(left, operator, right, span) => {
            let (l, r) = (evaluate(left, parameters, variables)?, evaluate(right, parameters, variables)?);
            let overflow =
                || diagnostic("arithmetic overflow: the value does not fit in a signed 64-bit integer", *span);
            match (l, *operator, r) {
                (Operand::Constant(a), '+', Operand::Constant(b)) => {
                    a.checked_add(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(a), '-', Operand::Constant(b)) => {
                    a.checked_sub(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(a), '*', Operand::Constant(b)) => {
                    a.checked_mul(b).map(Operand::Constant).ok_or_else(overflow)
                }
                (Operand::Constant(_), '/', Operand::Constant(0)) => Err(diagnostic("division by zero", *span)),
                // i64::MIN / -1 is the one quotient that does not fit.
                (Operand::Constant(a), '/', Operand::Constant(b)) => {
                    a.checked_div(b).map(Operand::Constant).ok_or_else(overflow)
                }
                // A register's offset is constant arithmetic too: checked the same way.
                (Operand::Register(reg, offset), '+', Operand::Constant(b))
                | (Operand::Constant(b), '+', Operand::Register(reg, offset)) => {
                    offset.checked_add(b).map(|offset| Operand::Register(reg, offset)).ok_or_else(overflow)
                }
                (Operand::Register(reg, offset), '-', Operand::Constant(b)) => {
                    offset.checked_sub(b).map(|offset| Operand::Register(reg, offset)).ok_or_else(overflow)
                }
                _ => Err(diagnostic("a variable can only be offset by a constant (`buf + 4K`)", *span)),
            }
        }
    }
}

/// Builds the model's system from the AST with these parameter values: the first error.
pub(crate) fn build(ast: &Ast, parameters: &BTreeMap<String, i64>) -> Result<SystemSpec, Diagnostic> {
    build_all(ast, parameters).map_err(|mut errors| errors.swap_remove(0))
}

/// Builds the model's system, or reports every statement that does not build (a statement's
/// error does not stop the next; a declaration's does), in the order of the file.
pub(crate) fn build_all(ast: &Ast, parameters: &BTreeMap<String, i64>) -> Result<SystemSpec, Vec<Diagnostic>> {
    let mut builder = Builder {
        source: &ast.source,
        registers_max: 0,
        events: Vec::new(),
        parameters,
        files: BTreeMap::new(),
        devices: BTreeMap::new(),
        spec: SystemSpec::default(),
        errors: Vec::new(),
    };
    let spec = builder.build(ast);
    let mut errors = builder.errors;
    match spec {
        Ok(spec) if errors.is_empty() => Ok(spec),
        Ok(_) => Err(errors),
        Err(error) => {
            errors.push(error);
            errors.sort_by_key(|e| e.start);
            Err(errors)
        }
    }
}

impl Builder<'_> {
    fn build(&mut self, ast: &Ast) -> Result<SystemSpec, Diagnostic> {
        let parameters = self.parameters;
        let builder = self;
        for (index, file) in ast.files.iter().enumerate() {
            let size = evaluate_constant(&file.size, parameters)?;
            let fill = evaluate_constant(&file.fill, parameters)?;
            if size <= 0 {
                return Err(diagnostic("a file's size must be positive", file.size.span()));
            }
            if size > SIZE_BYTES_MAX {
                return Err(diagnostic(
                    format!("a file is at most 1024G (1 TiB; this is {size} bytes)"),
                    file.size.span(),
                ));
            }
            if !(0..=255).contains(&fill) {
                return Err(diagnostic("a fill byte is 0 to 255", file.fill.span()));
            }
            builder.files.insert(file.name.clone(), index as u32);
            builder.spec.files.push(filled_file(size, fill as u8));
        }
        if let Some(size) = &ast.swap {
            let bytes = evaluate_constant(size, parameters)?;
            let pages = (bytes.max(0) as u64).div_ceil(PAGE_SIZE);
            // mkswap writes the header into the first page: swapon refuses a device without a
            // page after it ("Empty swap-file").
            if bytes <= 0 || !(2..=4096).contains(&pages) {
                return Err(diagnostic(
                    "a swap device is 2 to 4096 pages (the first holds the swap header)",
                    size.span(),
                ));
            }
            builder.spec.swap_pages = pages as u32;
        }
        for size in &ast.mthp {
            let bytes = evaluate_constant(size, parameters)?;
            let pages = bytes / PAGE_SIZE as i64;
            if bytes <= 0
                || bytes % PAGE_SIZE as i64 != 0
                || !(pages as u64).is_power_of_two()
                || !(2..=256).contains(&pages)
            {
                return Err(diagnostic("an mTHP size is a power of two from 8K to 1M", size.span()));
            }
            builder.spec.anon_orders |= 1 << pages.trailing_zeros();
        }
        for device in &ast.devices {
            let spec = builder.device(device)?;
            builder.devices.insert(device.name.clone(), builder.spec.devices.len() as u32);
            builder.spec.devices.push(spec);
        }
        // Thread ids: each process's main thread, then its threads in order; kernel threads last.
        for declaration in ast.threads.iter().filter(|t| !t.kernel) {
            let mm = builder.spec.mms as u32;
            builder.spec.mms += 1;
            builder.process(declaration, mm)?;
        }
        for declaration in ast.threads.iter().filter(|t| t.kernel) {
            let id = builder.thread(&declaration.name, None, true, declaration.span)?;
            let mut variables = BTreeMap::new();
            let program = builder.statements(&declaration.body, None, &mut variables, None)?;
            let thread = &mut builder.spec.threads[id as usize];
            (thread.program, thread.registers) = (program, variables.len());
        }
        Ok(std::mem::take(&mut builder.spec))
    }
}

struct Builder<'a> {
    source: &'a str,
    /// The most registers any scope of the current process needs.
    registers_max: usize,
    events: Vec<String>,
    parameters: &'a BTreeMap<String, i64>,
    files: BTreeMap<String, u32>,
    devices: BTreeMap<String, u32>,
    spec: SystemSpec,
    /// The statements that did not build; each is reported and the next one built.
    errors: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn location(&self, span: Span) -> SourceLocation {
        let d = Diagnostic::new("", span.0, span.1);
        let (line, column) = d.line_column(self.source);
        SourceLocation { line: line as u32, column: column as u32 }
    }

    fn device(&self, device: &DeviceDecl) -> Result<DeviceSpec, Diagnostic> {
        let constant = |expr: &Option<Expr>| expr.as_ref().map(|e| evaluate_constant(e, self.parameters)).transpose();
        let (method, span) = (&device.method.0, device.method.1);
        let kind = match method.as_str() {
            "insert_page" | "insert_pages" => {
                if device.size.is_some() || device.fill.is_some() {
                    return Err(diagnostic("`size` and `fill` are for `remap_pfn` devices", span));
                }
                let order = constant(&device.order)?.unwrap_or(0);
                if !(0..=9).contains(&order) || (order > 0 && !device.compound) {
                    return Err(diagnostic("`order` is 0 to 9, and above 0 only for a `compound` allocation", span)
                        .with_note("a high-order allocation without __GFP_COMP has tail pages of refcount 0, which vm_insert_page() refuses"));
                }
                DeviceKind::InsertPage {
                    order: order as u8,
                    compound: device.compound,
                    batched: method == "insert_pages",
                }
            }
            "remap_pfn" => {
                if device.compound || device.order.is_some() {
                    return Err(diagnostic("`compound` and `order` are for `insert_page` devices", span));
                }
                let size =
                    constant(&device.size)?.ok_or_else(|| diagnostic("a `remap_pfn` device needs `size`", span))?;
                let pages = (size as u64).div_ceil(PAGE_SIZE);
                if size <= 0 || pages > 512 {
                    return Err(diagnostic("a device's memory is 1 to 512 pages", span));
                }
                DeviceKind::RemapPfn { base: 0, pages }
            }
            _ => {
                return Err(diagnostic(format!("unknown device kind `{method}`"), span)
                    .with_note("kinds: insert_page, insert_pages, remap_pfn"))
            }
        };
        let fill = constant(&device.fill)?.unwrap_or(0);
        let fill = u8::try_from(fill).map_err(|_| diagnostic("a fill byte is 0 to 255", span))?;
        Ok(DeviceSpec { name: device.name.clone(), kind, fill })
    }

    /// A new thread with an empty program, refused past THREADS_MAX at `span` (the statement
    /// that starts it).
    fn thread(&mut self, name: &str, mm: Option<u32>, starts: bool, span: Span) -> Result<u32, Diagnostic> {
        if self.spec.threads.len() >= THREADS_MAX {
            return Err(diagnostic(
                format!("at most {THREADS_MAX} threads (processes, their threads and forks, and kernel threads)"),
                span,
            ));
        }
        let id = self.spec.threads.len() as u32;
        self.spec.threads.push(ThreadSpec { name: name.to_string(), mm, program: Vec::new(), starts, registers: 0 });
        Ok(id)
    }

    fn process(&mut self, declaration: &ThreadDecl, mm: u32) -> Result<(), Diagnostic> {
        self.registers_max = 0;
        let main = self.thread(&declaration.name, Some(mm), true, declaration.span)? as usize;
        let mut variables = BTreeMap::new();
        let mut children = Vec::new();
        let mut program = self.statements(&declaration.body, Some(mm), &mut variables, Some(&mut children))?;
        if !children.is_empty() {
            program.push(Instruction::Join { threads: children });
        }
        program.push(Instruction::Exit);
        self.spec.threads[main].program = program;
        // Registers are per process: every thread of it sees the same numbering.
        let registers = variables.len().max(self.registers_max).max(1);
        for thread in &mut self.spec.threads[main..] {
            thread.registers = registers;
        }
        Ok(())
    }

    fn statements(
        &mut self,
        body: &[Statement],
        mm: Option<u32>,
        variables: &mut BTreeMap<String, u16>,
        mut children: Option<&mut Vec<u32>>,
    ) -> Result<Vec<Instruction>, Diagnostic> {
        let mut program = Vec::new();
        for statement in body {
            if let Err(error) = self.statement(statement, mm, variables, children.as_deref_mut(), &mut program) {
                // Reported, and the next statement built: a variable the failed one assigns
                // is defined all the same, so that its uses do not report it again.
                if let Statement::Call { destination: Some((name, _)), .. } = statement {
                    let next = variables.len() as u16;
                    variables.entry(name.clone()).or_insert(next);
                }
                if self.errors.len() + 1 >= ERRORS_MAX {
                    return Err(error);
                }
                self.errors.push(error);
            }
        }
        Ok(program)
    }

    /// One statement's instructions, appended to `program`.
    fn statement(
        &mut self,
        statement: &Statement,
        mm: Option<u32>,
        variables: &mut BTreeMap<String, u16>,
        children: Option<&mut Vec<u32>>,
        program: &mut Vec<Instruction>,
    ) -> Result<(), Diagnostic> {
        let instruction = match statement {
            Statement::Thread { name, body, span } => {
                let Some(children) = children else {
                    return Err(diagnostic("threads are started from a process's main body", *span));
                };
                self.spawn(name, body, *span, mm, variables, children)?
            }
            Statement::Fork { name, body, span } => {
                let (Some(children), Some(_)) = (children, mm) else {
                    return Err(diagnostic("fork is called from a process's main body", *span));
                };
                self.fork(name, body, *span, variables, children)?
            }
            Statement::Event { signal, name, span } => self.event(*signal, name, *span)?,
            Statement::Assert { condition, text, span } => Instruction::Assert {
                condition: self.condition(condition, variables)?,
                text: text.clone(),
                location: self.location(*span),
            },
            Statement::AssertLoad { call, comparison, expect, span } => {
                self.assert_load(call, *comparison, expect, *span, mm, variables)?
            }
            Statement::Call { destination, call } => {
                if let Some((name, span)) = destination {
                    if variables.len() >= VARIABLES_MAX && !variables.contains_key(name) {
                        return Err(diagnostic(format!("at most {VARIABLES_MAX} variables in a process"), *span));
                    }
                }
                let destination = destination.as_ref().map(|d| d.0.as_str());
                let mut site = calls::Site { call, mm, variables, destination, repeat: 1 };
                let instruction = self.call(&mut site)?;
                for _ in 1..site.repeat {
                    program.push(instruction.clone());
                }
                instruction
            }
        };
        program.push(instruction);
        Ok(())
    }

    /// An assertion's condition, its values evaluated (parameters as constants, variables as
    /// registers).
    fn condition(&self, condition: &Cond, variables: &BTreeMap<String, u16>) -> Result<Condition, Diagnostic> {
        let value = |expr: &Expr| evaluate(expr, self.parameters, variables);
        Ok(match condition {
            Cond::Compare { left, mask, comparison, right } => Condition::Compare {
                left: value(left)?,
                mask: mask.as_ref().map(value).transpose()?,
                comparison: *comparison,
                right: value(right)?,
            },
            Cond::Not(inner) => Condition::Not(Box::new(self.condition(inner, variables)?)),
            Cond::And(a, b) => {
                Condition::And(Box::new(self.condition(a, variables)?), Box::new(self.condition(b, variables)?))
            }
            Cond::Or(a, b) => {
                Condition::Or(Box::new(self.condition(a, variables)?), Box::new(self.condition(b, variables)?))
            }
        })
    }

    /// `thread NAME { ... }`: a thread of the process, which sees the variables defined before
    /// it starts (a copy of the registers); what it defines stays its own.
    fn spawn(
        &mut self,
        name: &str,
        body: &[Statement],
        span: Span,
        mm: Option<u32>,
        variables: &BTreeMap<String, u16>,
        children: &mut Vec<u32>,
    ) -> Result<Instruction, Diagnostic> {
        let id = self.thread(name, mm, false, span)?;
        let mut scoped = variables.clone();
        let thread_program = self.statements(body, mm, &mut scoped, None)?;
        self.registers_max = self.registers_max.max(scoped.len());
        self.spec.threads[id as usize].program = thread_program;
        children.push(id);
        Ok(Instruction::Spawn { thread: id })
    }

    /// `fork NAME { ... }`: a child process with a new mm, which sees the variables defined
    /// before the fork (a copy).
    fn fork(
        &mut self,
        name: &str,
        body: &[Statement],
        span: Span,
        variables: &BTreeMap<String, u16>,
        children: &mut Vec<u32>,
    ) -> Result<Instruction, Diagnostic> {
        let child_mm = self.spec.mms as u32;
        self.spec.mms += 1;
        let id = self.thread(name, Some(child_mm), false, span)?;
        let mut scoped = variables.clone();
        let mut grandchildren = Vec::new();
        let mut child_program = self.statements(body, Some(child_mm), &mut scoped, Some(&mut grandchildren))?;
        self.registers_max = self.registers_max.max(scoped.len());
        if !grandchildren.is_empty() {
            child_program.push(Instruction::Join { threads: grandchildren });
        }
        child_program.push(Instruction::Exit);
        self.spec.threads[id as usize].program = child_program;
        children.push(id);
        Ok(Instruction::Fork { dst: None, child: id, child_mm })
    }

    /// `signal NAME` or `wait NAME`: events are numbered in order of first use, at most 64.
    fn event(&mut self, signal: bool, name: &str, span: Span) -> Result<Instruction, Diagnostic> {
        let index = match self.events.iter().position(|e| e == name) {
            Some(index) => index,
            None => {
                self.events.push(name.to_string());
                self.events.len() - 1
            }
        };
        if index >= 64 {
            return Err(diagnostic("at most 64 events", span));
        }
        let event = index as u8;
        Ok(if signal { Instruction::Signal { event } } else { Instruction::WaitEvent { event } })
    }

    /// `assert load(address, length) == byte`.
    fn assert_load(
        &mut self,
        call: &Call,
        comparison: Comparison,
        expect: &Expr,
        span: Span,
        mm: Option<u32>,
        variables: &BTreeMap<String, u16>,
    ) -> Result<Instruction, Diagnostic> {
        if comparison != Comparison::Equal {
            return Err(diagnostic("a load is compared with `==` to the byte every address must hold", span));
        }
        self.require_process(mm, call)?;
        let [address, length] = self.arguments::<2>(call, "load(address, length)")?;
        let address = evaluate(address, self.parameters, variables)?;
        let length = self.length(length, variables)?;
        let expect = self.byte(expect, variables)?;
        Ok(Instruction::Load { address, length, expect, location: self.location(span) })
    }

    fn require_process(&self, mm: Option<u32>, call: &Call) -> Result<u32, Diagnostic> {
        mm.ok_or_else(|| {
            diagnostic(format!("`{}` needs a process (kernel threads have no address space)", call.name), call.span)
        })
    }

    fn arguments<'c, const N: usize>(&self, call: &'c Call, usage: &str) -> Result<[&'c Expr; N], Diagnostic> {
        if call.arguments.len() != N {
            return Err(diagnostic(format!("`{}` takes {N} argument(s): {usage}", call.name), call.span));
        }
        Ok(std::array::from_fn(|i| &call.arguments[i]))
    }

    fn length(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u64, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        if value <= 0 {
            return Err(diagnostic(format!("a length must be positive (this is {value})"), expr.span()));
        }
        if value > SIZE_BYTES_MAX {
            return Err(diagnostic(format!("a length is at most 1024G (1 TiB; this is {value} bytes)"), expr.span()));
        }
        Ok(value as u64)
    }

    /// The length of a syscall that only names an address range (mmap, munmap, mremap,
    /// mprotect, madvise, UFFDIO_REGISTER) or that the kernel clamps (pread: MAX_RW_COUNT): any
    /// positive value, as the kernel checks it itself
    /// (TASK_SIZE, wrapping) and the model's walks cost what exists in the range, not its size.
    fn range_length(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u64, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        if value <= 0 {
            return Err(diagnostic(format!("a length must be positive (this is {value})"), expr.span()));
        }
        Ok(value as u64)
    }

    fn byte(&self, expr: &Expr, variables: &BTreeMap<String, u16>) -> Result<u8, Diagnostic> {
        let value = evaluate_constant_in(expr, self.parameters, variables)?;
        u8::try_from(value).map_err(|_| diagnostic(format!("a byte is 0 to 255 (this is {value})"), expr.span()))
    }

    fn flags(&self, expr: &Expr, known: &[(&str, u32)]) -> Result<u32, Diagnostic> {
        let names: Vec<(String, Span)> = match expr {
            Expr::Flags(flags, _) => flags.clone(),
            Expr::Name(name, span) => vec![(name.clone(), *span)],
            _ => return Err(diagnostic("expected flags", expr.span())),
        };
        let mut value = 0;
        for (name, span) in names {
            let Some((_, bit)) = known.iter().find(|(n, _)| *n == name) else {
                let all: Vec<&str> = known.iter().map(|k| k.0).collect();
                return Err(diagnostic(format!("unknown flag `{name}`"), span)
                    .with_note(format!("flags here: {}", all.join(", "))));
            };
            value |= bit;
        }
        Ok(value)
    }

    fn name_argument<'e>(&self, expr: &'e Expr, what: &str) -> Result<(&'e str, Span), Diagnostic> {
        match expr {
            Expr::Name(name, span) => Ok((name, *span)),
            _ => Err(diagnostic(format!("expected {what}"), expr.span())),
        }
    }

    /// mmap's fourth argument: a device declared with `device` or a file declared with `file`.
    fn mapped_object(&self, expr: &Expr) -> Result<(Option<u32>, Option<u32>), Diagnostic> {
        let (name, span) = self.name_argument(expr, "a device or a file (declared with `device` or `file`)")?;
        match (self.devices.get(name), self.files.get(name)) {
            (Some(&device), None) => Ok((Some(device), None)),
            (None, Some(&file)) => Ok((None, Some(file))),
            (Some(_), Some(_)) => Err(diagnostic(format!("`{name}` names both a device and a file"), span)),
            (None, None) => Err(diagnostic(format!("unknown device or file `{name}`"), span)),
        }
    }
}

/// The pagemap and kpageflags bits scenarios compare against (`PM_PRESENT`, `KPF_ANON`...).
fn proc_constant(name: &str) -> Option<i64> {
    use mmcheck_model::fs::proc::page::{kpf, PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SWAP};
    let value = match name {
        "PM_PRESENT" => PM_PRESENT,
        "PM_SWAP" => PM_SWAP,
        "PM_FILE" => PM_FILE,
        "PM_MMAP_EXCLUSIVE" => PM_MMAP_EXCLUSIVE,
        "KPF_MMAP" => kpf::MMAP,
        "KPF_ANON" => kpf::ANON,
        "KPF_SWAPCACHE" => kpf::SWAPCACHE,
        "KPF_SWAPBACKED" => kpf::SWAPBACKED,
        "KPF_COMPOUND_HEAD" => kpf::COMPOUND_HEAD,
        "KPF_COMPOUND_TAIL" => kpf::COMPOUND_TAIL,
        "KPF_THP" => kpf::THP,
        "KPF_ZERO_PAGE" => kpf::ZERO_PAGE,
        _ => return None,
    };
    Some(value as i64)
}
