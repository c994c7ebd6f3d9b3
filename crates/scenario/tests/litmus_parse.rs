//! The C litmus parser: each construct's exact AST, spans, errors, the copies in
//! `tests/litmus/`, the shared corpus, and inputs that must not make it panic.

use mmcheck_scenario::litmus::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Builders for expected ASTs; spans are erased before comparing (see `erase_spans`).

fn expr(kind: ExprKind) -> Expr {
    Expr { kind, span: Span::default() }
}

fn name(text: &str) -> Expr {
    expr(ExprKind::Name(text.to_string()))
}

fn integer(value: i64) -> Expr {
    expr(ExprKind::Integer(value))
}

fn deref(inner: Expr) -> Expr {
    expr(ExprKind::Deref(Box::new(inner)))
}

fn call(function: &str, args: Vec<Expr>) -> Expr {
    expr(ExprKind::Call { name: function.to_string(), args })
}

fn binary(operator: BinaryOperator, left: Expr, right: Expr) -> Expr {
    expr(ExprKind::Binary { operator, left: Box::new(left), right: Box::new(right) })
}

fn unary(operator: UnaryOperator, operand: Expr) -> Expr {
    expr(ExprKind::Unary { operator, operand: Box::new(operand) })
}

fn simple_type(base: &str, pointers: usize) -> Type {
    Type { base: base.to_string(), qualifiers: Vec::new(), pointers }
}

fn stmt(kind: StmtKind) -> Stmt {
    Stmt { kind, span: Span::default() }
}

fn declare(declared_type: Type, variable: &str, init: Option<Expr>) -> Declarator {
    Declarator { declared_type, name: variable.to_string(), init, span: Span::default() }
}

fn register(thread: usize, register: &str) -> Location {
    Location::Register { thread, name: register.to_string() }
}

fn global(variable: &str) -> Location {
    Location::Global(variable.to_string())
}

fn atom(location: Location, negated: bool, value: Value) -> Prop {
    Prop::Atom(Atom { location, negated, value, span: Span::default() })
}

fn and(left: Prop, right: Prop) -> Prop {
    Prop::And(Box::new(left), Box::new(right))
}

fn or(left: Prop, right: Prop) -> Prop {
    Prop::Or(Box::new(left), Box::new(right))
}

fn not(inner: Prop) -> Prop {
    Prop::Not(Box::new(inner))
}

/// Resets every span so that tests compare structure; spans have their own tests.
fn erase_spans(test: &mut LitmusTest) {
    test.name_span = Span::default();
    if let Some(expected) = &mut test.expected {
        expected.span = Span::default();
    }
    for entry in &mut test.init {
        entry.span = Span::default();
    }
    for thread in &mut test.threads {
        thread.span = Span::default();
        thread.params.iter_mut().for_each(|param| param.span = Span::default());
        thread.body.iter_mut().for_each(erase_statement);
    }
    test.filter.iter_mut().for_each(erase_prop);
    test.condition.span = Span::default();
    erase_prop(&mut test.condition.prop);
}

fn erase_statement(statement: &mut Stmt) {
    statement.span = Span::default();
    match &mut statement.kind {
        StmtKind::Declaration(declarators) => {
            for declarator in declarators {
                declarator.span = Span::default();
                declarator.init.iter_mut().for_each(erase_expression);
            }
        }
        StmtKind::Assign { target, value, .. } => {
            erase_expression(target);
            erase_expression(value);
        }
        StmtKind::Expression(expression) => erase_expression(expression),
        StmtKind::If { condition, then_branch, else_branch } => {
            erase_expression(condition);
            erase_statement(then_branch);
            else_branch.iter_mut().for_each(|branch| erase_statement(branch));
        }
        StmtKind::While { condition, body } | StmtKind::DoWhile { body, condition } => {
            erase_expression(condition);
            erase_statement(body);
        }
        StmtKind::Block(body) => body.iter_mut().for_each(erase_statement),
        StmtKind::Empty => {}
    }
}

fn erase_expression(expression: &mut Expr) {
    expression.span = Span::default();
    match &mut expression.kind {
        ExprKind::Integer(_) | ExprKind::Name(_) => {}
        ExprKind::Deref(inner)
        | ExprKind::AddressOf(inner)
        | ExprKind::Unary { operand: inner, .. }
        | ExprKind::Cast { value: inner, .. } => erase_expression(inner),
        ExprKind::Binary { left, right, .. } => {
            erase_expression(left);
            erase_expression(right);
        }
        ExprKind::Conditional { condition, then_value, else_value } => {
            erase_expression(condition);
            erase_expression(then_value);
            erase_expression(else_value);
        }
        ExprKind::Call { args, .. } => args.iter_mut().for_each(erase_expression),
    }
}

fn erase_prop(prop: &mut Prop) {
    match prop {
        Prop::True | Prop::False => {}
        Prop::Not(inner) => erase_prop(inner),
        Prop::And(left, right) | Prop::Or(left, right) | Prop::Implies(left, right) => {
            erase_prop(left);
            erase_prop(right);
        }
        Prop::Atom(atom) => atom.span = Span::default(),
    }
}

#[track_caller]
fn parsed(source: &str) -> LitmusTest {
    match parse(source) {
        Ok(mut test) => {
            erase_spans(&mut test);
            test
        }
        Err(error) => panic!("{error}\nsource:\n{source}"),
    }
}

/// The statements of a one-thread test whose body is `body`.
#[track_caller]
fn body(body: &str) -> Vec<Stmt> {
    let mut test = parsed(&format!("C t\n{{}}\nP0(int *x, int *y)\n{{\n{body}\n}}\nexists (x=0)\n"));
    test.threads.remove(0).body
}

/// The expression of `int r = EXPRESSION;`.
#[track_caller]
fn expression(text: &str) -> Expr {
    match body(&format!("int r = {text};")).remove(0).kind {
        StmtKind::Declaration(mut declarators) => declarators.remove(0).init.expect("an initialiser"),
        other => panic!("not a declaration: {other:?}"),
    }
}

/// The condition of a one-thread test ending with `condition`.
#[track_caller]
fn condition(condition: &str) -> Condition {
    parsed(&format!("C t\n{{}}\nP0(int *x) {{}}\n{condition}\n")).condition
}

#[track_caller]
fn error(source: &str) -> LitmusError {
    match parse(source) {
        Ok(test) => panic!("parsed as {test:?}\nsource:\n{source}"),
        Err(error) => error,
    }
}

/// Asserts the error mentions `mention` and points at `line:column`.
#[track_caller]
fn assert_error(source: &str, mention: &str, line: usize, column: usize) {
    let error = error(source);
    assert!(error.message.contains(mention), "`{}` does not mention `{mention}`", error.message);
    assert_eq!((error.line, error.column), (line, column), "{error}\nsource:\n{source}");
}

// ---------------------------------------------------------------------------------------------
// Header and preamble.

#[test]
fn header_name_and_expected_result() {
    let test =
        parse("C SB+o-mb-o+o-mb-o.litmus\n(*\n * Result: Sometimes DATARACE\n *)\n{}\nP0(int *x) {}\nexists (x=0)\n")
            .unwrap();
    assert_eq!(test.name, "SB+o-mb-o+o-mb-o.litmus");
    assert_eq!(test.name_span, Span { start: Position { line: 1, column: 3 }, end: Position { line: 1, column: 26 } });
    let expected = test.expected.unwrap();
    assert_eq!(expected.result, ExpectedResult::Sometimes);
    assert_eq!(expected.flags, ["DATARACE"]);
    assert_eq!(expected.span.start, Position { line: 3, column: 4 });
    assert_eq!(test.comments, ["* Result: Sometimes DATARACE"]);
}

#[test]
fn expected_results_other_than_verdicts() {
    let result = |comment: &str| {
        let test = parsed(&format!("C t\n{comment}\n{{}}\nP0(int *x) {{}}\nexists (x=0)\n"));
        test.expected.map(|expected| (expected.result, expected.flags))
    };
    assert_eq!(result("(* Result: Never *)"), Some((ExpectedResult::Never, vec![])));
    assert_eq!(result("(* Result: Always *)"), Some((ExpectedResult::Always, vec![])));
    assert_eq!(result("(* Result: Maybe. *)"), Some((ExpectedResult::Other("Maybe".into()), vec![])));
    assert_eq!(
        result("(*\n * Result: Flag srcu-bad-nesting\n *)"),
        Some((ExpectedResult::Other("Flag".into()), vec!["srcu-bad-nesting".into()]))
    );
    assert_eq!(result("// Result: DEADLOCK"), Some((ExpectedResult::Other("DEADLOCK".into()), vec![])));
    assert_eq!(result("(* Expected result: allowed *)"), None);
    assert_eq!(result(""), None);
}

#[test]
fn preamble_doc_string_and_info_lines() {
    let test = parsed("C t\n\"Fence Rfe\"\nCom=Rf Ws\nOrig=FenceMb Rfe\n{\n}\nP0(int *x) {}\nexists (x=0)\n");
    assert_eq!(test.doc.as_deref(), Some("Fence Rfe"));
    assert_eq!(test.info, [("Com".to_string(), "Rf Ws".to_string()), ("Orig".to_string(), "FenceMb Rfe".to_string())]);
}

// ---------------------------------------------------------------------------------------------
// Initial state.

#[test]
fn init_entries() {
    let test = parsed(
        "C t\n{ x=0; p=y; int *y=&z; atomic_t v = ATOMIC_INIT(1); 0:r4=y; spinlock_t s; x=-3; int *z=1 (* c *) }\n\
         P0(int *x) {}\nexists (x=0)\n",
    );
    let entry = |declared_type: Option<Type>, target: Location, value: Option<InitValue>| InitEntry {
        declared_type,
        target,
        value,
        span: Span::default(),
    };
    assert_eq!(
        test.init,
        [
            entry(None, global("x"), Some(InitValue::Integer(0))),
            entry(None, global("p"), Some(InitValue::Address("y".into()))),
            entry(Some(simple_type("int", 1)), global("y"), Some(InitValue::Address("z".into()))),
            entry(
                Some(simple_type("atomic_t", 0)),
                global("v"),
                Some(InitValue::Call { name: "ATOMIC_INIT".into(), args: vec![InitValue::Integer(1)] })
            ),
            entry(None, register(0, "r4"), Some(InitValue::Address("y".into()))),
            entry(Some(simple_type("spinlock_t", 0)), global("s"), None),
            entry(None, global("x"), Some(InitValue::Integer(-3))),
            entry(Some(simple_type("int", 1)), global("z"), Some(InitValue::Integer(1))),
        ]
    );
}

#[test]
fn empty_init_blocks() {
    for init in ["{}", "{ }", "{\n;\n}"] {
        assert!(parsed(&format!("C t\n{init}\nP0(int *x) {{}}\nexists (x=0)\n")).init.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// Threads.

#[test]
fn thread_parameters() {
    let test = parsed(
        "C t\n{}\nP0(int *x, spinlock_t *sl, struct srcu_struct *s, volatile int* v, intptr_t **p) {}\n\
         P1() {}\nP12(void) {}\nexists (x=0)\n",
    );
    let types: Vec<(Type, &str)> =
        test.threads[0].params.iter().map(|param| (param.param_type.clone(), param.name.as_str())).collect();
    let volatile_int = Type { base: "int".into(), qualifiers: vec!["volatile".into()], pointers: 1 };
    assert_eq!(
        types,
        [
            (simple_type("int", 1), "x"),
            (simple_type("spinlock_t", 1), "sl"),
            (simple_type("struct srcu_struct", 1), "s"),
            (volatile_int, "v"),
            (simple_type("intptr_t", 2), "p"),
        ]
    );
    assert_eq!(test.threads.iter().map(|thread| thread.index).collect::<Vec<_>>(), [0, 1, 12]);
    assert!(test.threads[1].params.is_empty() && test.threads[2].params.is_empty());
}

#[test]
fn declarations() {
    let int = simple_type("int", 0);
    assert_eq!(
        body("int r0 = READ_ONCE(*x);\nint r1;\nint r2, *r3 = &r2;"),
        [
            stmt(StmtKind::Declaration(vec![declare(
                int.clone(),
                "r0",
                Some(call("READ_ONCE", vec![deref(name("x"))]))
            )])),
            stmt(StmtKind::Declaration(vec![declare(int.clone(), "r1", None)])),
            stmt(StmtKind::Declaration(vec![
                declare(int, "r2", None),
                declare(simple_type("int", 1), "r3", Some(expr(ExprKind::AddressOf(Box::new(name("r2")))))),
            ])),
        ]
    );
}

#[test]
fn assignments_and_calls() {
    assert_eq!(
        body("r1 = READ_ONCE(*x);\n*x = 1;\nsmp_mb();\nWRITE_ONCE(*y, r1 + 1);\nr1 += 2;"),
        [
            stmt(StmtKind::Assign {
                target: name("r1"),
                operator: None,
                value: call("READ_ONCE", vec![deref(name("x"))])
            }),
            stmt(StmtKind::Assign { target: deref(name("x")), operator: None, value: integer(1) }),
            stmt(StmtKind::Expression(call("smp_mb", vec![]))),
            stmt(StmtKind::Expression(call(
                "WRITE_ONCE",
                vec![deref(name("y")), binary(BinaryOperator::Add, name("r1"), integer(1))]
            ))),
            stmt(StmtKind::Assign { target: name("r1"), operator: Some(BinaryOperator::Add), value: integer(2) }),
        ]
    );
}

#[test]
fn control_flow() {
    let store = |value| stmt(StmtKind::Assign { target: deref(name("x")), operator: None, value: integer(value) });
    assert_eq!(
        body("if (r0) *x = 1; else { *x = 2; }\nwhile (!r0) ;\ndo { } while (r0 == 1);\n{ *x = 3; }"),
        [
            stmt(StmtKind::If {
                condition: name("r0"),
                then_branch: Box::new(store(1)),
                else_branch: Some(Box::new(stmt(StmtKind::Block(vec![store(2)])))),
            }),
            stmt(StmtKind::While {
                condition: unary(UnaryOperator::Not, name("r0")),
                body: Box::new(stmt(StmtKind::Empty))
            }),
            stmt(StmtKind::DoWhile {
                body: Box::new(stmt(StmtKind::Block(vec![]))),
                condition: binary(BinaryOperator::Equal, name("r0"), integer(1)),
            }),
            stmt(StmtKind::Block(vec![store(3)])),
        ]
    );
}

#[test]
fn dangling_else_belongs_to_the_nearest_if() {
    let statements = body("if (r0) if (r1) smp_mb(); else smp_rmb();");
    let StmtKind::If { then_branch, else_branch: None, .. } = &statements[0].kind else { panic!("{statements:?}") };
    assert!(matches!(&then_branch.kind, StmtKind::If { else_branch: Some(_), .. }));
}

// ---------------------------------------------------------------------------------------------
// Expressions.

#[test]
fn binary_precedence_follows_c() {
    use BinaryOperator::*;
    assert_eq!(
        expression("1 + 2 * 3 == 7 && !r0 || r1 & 4 << 1"),
        binary(
            LogicalOr,
            binary(
                LogicalAnd,
                binary(Equal, binary(Add, integer(1), binary(Multiply, integer(2), integer(3))), integer(7)),
                unary(UnaryOperator::Not, name("r0")),
            ),
            binary(BitAnd, name("r1"), binary(ShiftLeft, integer(4), integer(1))),
        )
    );
    assert_eq!(
        expression("r0 - 1 - 2"),
        binary(Subtract, binary(Subtract, name("r0"), integer(1)), integer(2)),
        "left-associative"
    );
    assert_eq!(
        expression("(r0 | r1) ^ r2 % 3"),
        binary(BitXor, binary(BitOr, name("r0"), name("r1")), binary(Remainder, name("r2"), integer(3)))
    );
    let comparisons = [("<", Less), ("<=", LessEqual), (">", Greater), (">=", GreaterEqual), ("!=", NotEqual)];
    for (text, operator) in comparisons {
        assert_eq!(expression(&format!("r0 {text} 0x10")), binary(operator, name("r0"), integer(16)));
    }
    assert_eq!(expression("r0 / 2 >> 1"), binary(ShiftRight, binary(Divide, name("r0"), integer(2)), integer(1)));
}

#[test]
fn unary_operators_casts_and_conditionals() {
    assert_eq!(expression("-~r0"), unary(UnaryOperator::Negate, unary(UnaryOperator::BitNot, name("r0"))));
    assert_eq!(
        expression("(intptr_t)rcu_dereference(*(intptr_t **)x)"),
        expr(ExprKind::Cast {
            target_type: simple_type("intptr_t", 0),
            value: Box::new(call(
                "rcu_dereference",
                vec![deref(expr(ExprKind::Cast {
                    target_type: simple_type("intptr_t", 2),
                    value: Box::new(name("x"))
                }))]
            )),
        })
    );
    assert_eq!(
        expression("r0 ? 1 : r1 ? 2 : 3"),
        expr(ExprKind::Conditional {
            condition: Box::new(name("r0")),
            then_value: Box::new(integer(1)),
            else_value: Box::new(expr(ExprKind::Conditional {
                condition: Box::new(name("r1")),
                then_value: Box::new(integer(2)),
                else_value: Box::new(integer(3)),
            })),
        })
    );
    assert_eq!(
        expression("(void *)0"),
        expr(ExprKind::Cast { target_type: simple_type("void", 1), value: Box::new(integer(0)) })
    );
}

#[test]
fn expression_spans_are_line_and_column() {
    let test = parse("C t\n{}\nP0(int *x)\n{\n\tr1 = READ_ONCE(*x) + 1;\n}\nexists (x=0)\n").unwrap();
    let statement = &test.threads[0].body[0];
    let at = |line, column| Position { line, column };
    assert_eq!(statement.span, Span { start: at(5, 2), end: at(5, 25) });
    let StmtKind::Assign { value, .. } = &statement.kind else { panic!("{statement:?}") };
    assert_eq!(value.span, Span { start: at(5, 7), end: at(5, 24) });
    let ExprKind::Binary { left, .. } = &value.kind else { panic!("{value:?}") };
    assert_eq!(left.span, Span { start: at(5, 7), end: at(5, 20) });
    assert_eq!(test.threads[0].span, Span { start: at(3, 1), end: at(6, 2) });
    assert_eq!(test.condition.span, Span { start: at(7, 1), end: at(7, 13) });
}

// ---------------------------------------------------------------------------------------------
// Conditions, filter and locations.

#[test]
fn condition_kinds() {
    let x_is_1 = atom(global("x"), false, Value::Integer(1));
    let kind_and_prop = |text: &str| {
        let condition = condition(text);
        (condition.kind, condition.prop)
    };
    assert_eq!(kind_and_prop("exists (x=1)"), (ConditionKind::Exists, x_is_1.clone()));
    assert_eq!(kind_and_prop("~exists (x=1)"), (ConditionKind::NotExists, x_is_1.clone()));
    assert_eq!(kind_and_prop("~ exists x=1"), (ConditionKind::NotExists, x_is_1.clone()));
    assert_eq!(kind_and_prop("not exists (x=1)"), (ConditionKind::NotExists, x_is_1.clone()));
    assert_eq!(kind_and_prop("forall (x=1)"), (ConditionKind::Forall, x_is_1.clone()));
    assert_eq!(kind_and_prop("final (x=1)"), (ConditionKind::Exists, x_is_1.clone()));
    assert_eq!(kind_and_prop("(x=1)"), (ConditionKind::Exists, x_is_1.clone()));
    assert_eq!(kind_and_prop("exists (x=1);"), (ConditionKind::Exists, x_is_1));
    assert_eq!(kind_and_prop(""), (ConditionKind::Forall, Prop::True), "herd's default");
}

#[test]
fn prop_precedence_follows_herd() {
    let equals = |location: Location, value| atom(location, false, Value::Integer(value));
    assert_eq!(
        condition("exists 0:r1=0 /\\ ~1:r2=0 \\/ x=1 /\\ (y=2 \\/ true)").prop,
        or(
            and(equals(register(0, "r1"), 0), not(equals(register(1, "r2"), 0))),
            and(equals(global("x"), 1), or(equals(global("y"), 2), Prop::True)),
        )
    );
    assert_eq!(
        condition("exists x=1 /\\ y=1 => z=1 => false").prop,
        and(
            equals(global("x"), 1),
            Prop::Implies(
                Box::new(equals(global("y"), 1)),
                Box::new(Prop::Implies(Box::new(equals(global("z"), 1)), Box::new(Prop::False)))
            )
        ),
        "`=>` binds tighter than `/\\` and to the right"
    );
    assert_eq!(condition("exists not(x=1)").prop, not(equals(global("x"), 1)));
}

#[test]
fn atoms() {
    let atoms = |text: &str| {
        let mut atoms = Vec::new();
        let mut prop = condition(&format!("exists ({text})")).prop;
        while let Prop::And(left, right) = prop {
            atoms.push(*right);
            prop = *left;
        }
        atoms.push(prop);
        atoms.reverse();
        atoms
    };
    assert_eq!(
        atoms("0:r1=y /\\ x=&y /\\ 0:r1=0:r4 /\\ x=*y /\\ x!=-1 /\\ x==2 /\\ [y]=3"),
        [
            atom(register(0, "r1"), false, Value::Address("y".into())),
            atom(global("x"), false, Value::Address("y".into())),
            atom(register(0, "r1"), false, Value::Location(register(0, "r4"))),
            atom(global("x"), false, Value::Location(global("y"))),
            atom(global("x"), true, Value::Integer(-1)),
            atom(global("x"), false, Value::Integer(2)),
            atom(global("y"), false, Value::Integer(3)),
        ]
    );
}

#[test]
fn locations_and_filter() {
    let test = parsed("C t\n{}\nP0(int *x) {}\nlocations [x;y;0:r0;1:r0;]\nfilter (0:r0=1)\nexists (x=1)\n");
    assert_eq!(test.locations, [global("x"), global("y"), register(0, "r0"), register(1, "r0")]);
    assert_eq!(test.filter, Some(atom(register(0, "r0"), false, Value::Integer(1))));
}

// ---------------------------------------------------------------------------------------------
// Comments.

#[test]
fn comments_everywhere_they_are_allowed() {
    let test = parsed(
        "C t // name\n(* outer (* nested *) *)\n/* c */\n// line\n{ x=1; (* in init *) }\n(* between *)\n\
         P0(int *x) // after header\n{\n\tint r0 = READ_ONCE(*x); /* c */ // c\n\tWRITE_ONCE(*x, (*x));\n}\n\
         (* before *) exists (x=1) (* after\n  several lines *)\n",
    );
    assert_eq!(test.name, "t // name", "the header line is the name, as herd reads it");
    assert_eq!(test.comments, ["outer (* nested *)", "c", "line"]);
    assert_eq!(test.threads[0].body.len(), 2);
    assert_eq!(
        test.threads[0].body[1],
        stmt(StmtKind::Expression(call("WRITE_ONCE", vec![deref(name("x")), deref(name("x"))])))
    );
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn errors_point_at_the_problem() {
    // (source, what the message mentions, line, column)
    let cases: &[(&str, &str, usize, usize)] = &[
        ("LISA t\n{}\n", "only C litmus tests", 1, 1),
        ("", "header line", 1, 1),
        ("C\n{}\n", "name after `C`", 1, 2),
        ("C t\nP0(int *x) {}\n", "expected `{` to open the initial state", 2, 1),
        ("C t\n(* open\n{}\n", "unterminated `(*` comment", 2, 1),
        ("C t\n{ x=1 }\nP0(int *x) { /* open }\n", "unterminated `/*` comment", 3, 14),
        ("C t\n{ x=1 }\nP0(int *x) { r0 = @; }\nexists (x=1)\n", "unexpected character `@`", 3, 19),
        ("C t\n{ x=1 }\nP0(int *x) { r0 = 1 }\nexists (x=1)\n", "expected `;`, found `}`", 3, 21),
        ("C t\n{ x=1 }\nexists (x=1)\n", "expected a thread", 3, 1),
        ("C t\n{}\nP0(int *x) {}\nexists (x=1) x\n", "end of the test", 4, 14),
        ("C t\n{}\nP0(int *x) {}\nexists (x<1)\n", "expected `=` or `!=`", 4, 10),
        ("C t\n{}\nP0(int *x) {}\nexists (x=99999999999999999999)\n", "invalid integer literal", 4, 11),
        ("C t\n{}\nP0(int *x) { r0 = x->next; }\nexists (x=1)\n", "expected `;`, found `->`", 3, 20),
    ];
    for (source, mention, line, column) in cases {
        assert_error(source, mention, *line, *column);
    }
}

#[test]
fn error_display_is_line_column_message() {
    let error = error("C t\n{ x=1 }\nP0(int *x) { r0 = 1 }\n");
    assert_eq!(error.to_string(), "3:21: expected `;`, found `}`");
    assert_eq!(format!("t.litmus:{error}"), "t.litmus:3:21: expected `;`, found `}`");
}

// ---------------------------------------------------------------------------------------------
// Files.

fn local_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    litmus_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/litmus"), &mut files);
    files.sort();
    files
}

fn litmus_files(directory: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else { return };
    for path in entries.flatten().map(|entry| entry.path()) {
        if path.is_dir() {
            litmus_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "litmus") {
            files.push(path);
        }
    }
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).expect("readable")).into_owned()
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|name| name.to_str()).expect("a file name")
}

#[test]
fn local_copies_parse() {
    use ExpectedResult::*;
    // (file, threads, expected result, condition kind)
    let table: &[(&str, usize, Option<ExpectedResult>, ConditionKind)] = &[
        ("C-3.SB+o-o+o-mb-o+o-mb-o.litmus", 3, None, ConditionKind::Exists),
        ("C-AlanStern.2018.01.11a.litmus", 3, Some(Never), ConditionKind::Exists),
        ("C-IRIW+o+o+o-mb-o+o-mb-o.litmus", 4, None, ConditionKind::Exists),
        ("C-LB+o-o+o-o.litmus", 2, None, ConditionKind::Exists),
        ("C-LB-LRW+OB-Dv.litmus", 2, Some(Never), ConditionKind::Exists),
        ("C-MP+o-assign+o-dep-o.litmus", 2, None, ConditionKind::Exists),
        ("C-MP+o-o+o-o.litmus", 2, None, ConditionKind::Exists),
        ("C-MP+o-rel+acq-o.litmus", 2, None, ConditionKind::Exists),
        ("C-MP+o-wmb-o+o-rmb-o.litmus", 2, None, ConditionKind::Exists),
        ("C-MP-rcuderef.litmus", 2, Some(Never), ConditionKind::Exists),
        ("C-SB+o-mb-o+o-mb-o.litmus", 2, None, ConditionKind::Exists),
        ("C-WR-H+WR-R+WR-R.litmus", 3, Some(Never), ConditionKind::Exists),
        ("C-WillDeacon-MP+o-r+ai-rmb-o.litmus", 2, Some(Sometimes), ConditionKind::Exists),
        ("C-atomic-01.litmus", 3, None, ConditionKind::Exists),
        ("C-atomic-04.litmus", 2, None, ConditionKind::Forall),
        ("C-llist-add-atomic.litmus", 2, Some(Never), ConditionKind::Exists),
        ("C-no-race.litmus", 2, Some(Never), ConditionKind::Exists),
        ("C-tmpstore.litmus", 2, Some(Sometimes), ConditionKind::Exists),
    ];
    let files = local_files();
    assert_eq!(
        files.iter().map(|path| file_name(path)).collect::<Vec<_>>(),
        table.iter().map(|row| row.0).collect::<Vec<_>>()
    );
    for (path, (_, threads, result, kind)) in files.iter().zip(table) {
        let test = parse(&read(path)).unwrap_or_else(|error| panic!("{}:{error}", path.display()));
        assert_eq!(test.threads.len(), *threads, "{}", path.display());
        assert_eq!(test.expected.map(|expected| expected.result), *result, "{}", path.display());
        assert_eq!(test.condition.kind, *kind, "{}", path.display());
    }
}

#[test]
fn shared_corpus_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/litmus");
    if !root.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "the litmus corpus {} is missing", root.display());
        println!("note: {} is missing; the corpus test is skipped", root.display());
        return;
    }
    let mut files = Vec::new();
    litmus_files(&root, &mut files);
    files.sort();
    let (mut c_tests, mut other_architectures, mut failures) = (0, 0, Vec::new());
    for path in &files {
        match parse(&read(path)) {
            Ok(_) => c_tests += 1,
            Err(error) if error.message.contains("only C litmus tests") => other_architectures += 1,
            Err(error) => {
                c_tests += 1;
                failures.push(format!("{}:{error}", path.display()));
            }
        }
    }
    for failure in &failures {
        println!("{failure}");
    }
    let parsed = c_tests - failures.len();
    println!("{parsed} of {c_tests} C tests parse; {other_architectures} LISA/assembly tests are refused");
    assert!(files.len() > 3000, "the corpus has {} files", files.len());
    assert!(parsed * 100 >= c_tests * 99, "only {parsed} of {c_tests} parse");
}

// ---------------------------------------------------------------------------------------------
// Robustness: no input makes the parser panic.

/// xorshift64: reproducible pseudo-random numbers without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

#[test]
fn truncations_do_not_panic() {
    for path in local_files() {
        let source = read(&path);
        for (end, _) in source.char_indices() {
            let _ = parse(&source[..end]);
        }
    }
}

#[test]
fn random_inputs_do_not_panic() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let sources: Vec<String> = local_files().iter().map(|path| read(path)).collect();
    const ALPHABET: &[u8] = b"(){}[];:,*&~!=<>/\\-+|^%?.\"'\n \tPx0r1_C exists";
    for round in 0..3000 {
        let mut bytes = sources[round % sources.len()].clone().into_bytes();
        for _ in 0..1 + random.below(8) {
            let at = random.below(bytes.len());
            let byte = if random.below(4) == 0 { random.next() as u8 } else { ALPHABET[random.below(ALPHABET.len())] };
            match random.below(3) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, byte),
            }
        }
        let _ = parse(&String::from_utf8_lossy(&bytes));
        let noise: Vec<u8> = (0..random.below(200)).map(|_| ALPHABET[random.below(ALPHABET.len())]).collect();
        let _ = parse(&format!("C t\n{}", String::from_utf8_lossy(&noise)));
    }
}

#[test]
fn deep_nesting_is_refused_within_a_small_stack() {
    let shapes: &[(&str, &str, &str)] = &[
        ("P0(int *x) { r0 = ", "(", "1; }"),
        ("P0(int *x) { r0 = ", "*", "x; }"),
        ("P0(int *x) { r0 = ", "!", "x; }"),
        ("P0(int *x) { r0 = ", "(int)", "x; }"),
        ("P0(int *x) { r0 = ", "f(", "1; }"),
        ("P0(int *x) { r0 = ", "1 ? 1 : ", "1; }"),
        ("P0(int *x) { r0 = ", "1 + (", "1; }"),
        ("P0(int *x) ", "{", "}"),
        ("P0(int *x) { ", "if (1) ", "; }"),
        ("P0(int *x) { ", "do ", "; }"),
        ("P0(int *x) {} exists ", "(", "x=1"),
        ("P0(int *x) {} exists ", "~", "x=1"),
        ("P0(int *x) {} exists ", "x=1 => ", "x=1"),
    ];
    let inputs: Vec<String> = shapes
        .iter()
        .map(|(before, repeated, after)| format!("C t\n{{}}\n{before}{}{after}\n", repeated.repeat(2000)))
        .collect();
    let init = format!("C t\n{{ atomic_t v = {}1 }}\nP0(int *x) {{}}\n", "A(".repeat(2000));
    let checker = std::thread::Builder::new().stack_size(1 << 20).spawn(move || {
        for input in inputs.iter().chain([&init]) {
            let error = error(input);
            assert!(error.message.contains("nesting deeper"), "{error} for {}", &input[..60]);
        }
    });
    checker.expect("a thread").join().expect("no stack overflow");
}
