//! The CPU budget: a compiler middleware that makes guests count their work.
//!
//! Each function is cut into *regions*: stretches of operators that control
//! can only enter at their start (see [`regions`]). On entering a region the
//! guest pays one point for each of its operators, so a run is charged at
//! least one point for every operator it executes; a branch that leaves a
//! region early leaves the rest of it paid for.
//!
//! Only the regions where control can come back to code it already ran
//! check that enough points are left: a function's start and a loop's body.
//! (In WebAssembly every backward branch goes to a `loop`.) The others just
//! subtract. A run that never ends therefore always fails a check, and a run
//! can overdraw its budget by at most one loop-free stretch of a function
//! before it is stopped.
//!
//! `wasmer-middlewares`'s `Metering` checks and subtracts at every branch and
//! block boundary; checking only where control can come back costs a run
//! far fewer instructions. The price is the overcharge of stretches left
//! early (docs/benchmarks.md measures both).
//!
//! A bulk operator (`memory.fill`, `memory.copy`, `memory.init` and their
//! table counterparts) costs a point per byte or element it moves, charged
//! from its length operand as it runs. A call of an imported function (a
//! host call: `next`, a WASI function) costs [`HOST_CALL_POINTS`] on top of
//! its operator; host functions that
//! move bytes or sleep charge for that themselves, by lowering the points
//! left (see `guest::charge`).
//!
//! The middleware adds three globals to each module and exports two:
//! [`REMAINING`] (an `i64` count of points) and [`EXHAUSTED`] (an `i32` set
//! to [`OUT_OF_POINTS`] just before the guest traps for lack of points, and
//! to [`TABLE_REFUSED`] when a `table.grow` fails, so that a trap after it
//! can be told to be about the memory limit). The third is scratch space
//! for that check. A wasm start
//! function is not left to run inside instantiation, where no budget can be
//! told from its traps: it becomes the export [`START`], which the runtime
//! calls first.

use std::sync::Mutex;

use wasmer::sys::{FunctionMiddleware, MiddlewareError, MiddlewareReaderState, ModuleMiddleware};
use wasmer::wasmparser::{BlockType, Operator};
use wasmer::{ExportIndex, GlobalInit, GlobalType, LocalFunctionIndex, Mutability, Type};
use wasmer_types::{GlobalIndex, ModuleInfo};

/// The export holding the points left (`i64`, read as unsigned).
pub(crate) const REMAINING: &str = "scale_budget_remaining";
/// The export set to [`OUT_OF_POINTS`] when a guest ran out of points.
pub(crate) const EXHAUSTED: &str = "scale_budget_exhausted";
/// [`EXHAUSTED`]: the guest ran out of points.
pub(crate) const OUT_OF_POINTS: i32 = 1;
/// [`EXHAUSTED`]: a `table.grow` of the guest failed.
pub(crate) const TABLE_REFUSED: i32 = 2;
/// The export a module's start function becomes.
pub(crate) const START: &str = "scale_start";

/// What a call of an imported function costs, beyond what its host
/// function charges for the bytes it moves: about what the host spends on
/// the call itself, in points of about an operator each.
pub(crate) const HOST_CALL_POINTS: u64 = 1_000;

/// The middleware. It keeps the indexes of the globals it added, so one
/// value instruments one module only (as the runtime does: an engine per
/// function when metering is on).
#[derive(Debug)]
pub(crate) struct Metering {
    /// The points a fresh instance starts with (instantiation runs on them).
    initial: u64,
    globals: Mutex<Option<Globals>>,
}

/// The indexes of the two globals in the instrumented module.
#[derive(Debug, Clone, Copy)]
struct Globals {
    remaining: u32,
    exhausted: u32,
    /// Holds what `table.grow` answered while it is checked.
    scratch: u32,
    /// Functions below this index are imports: calling one is a host call.
    imported_functions: u32,
}

impl Metering {
    pub(crate) fn new(initial: u64) -> Self {
        Self { initial, globals: Mutex::new(None) }
    }
}

impl ModuleMiddleware for Metering {
    fn generate_function_middleware<'a>(&self, _: LocalFunctionIndex) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        let globals = self.globals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // `transform_module_info` runs before any function is compiled.
        let globals = globals.expect("the module was transformed before its functions are compiled");
        Box::new(FunctionMetering { globals, body: Vec::new(), depth: 0 })
    }

    fn transform_module_info(&self, module: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let mut globals = self.globals.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if globals.is_some() {
            return Err(MiddlewareError::new("metering", "one metering middleware instruments one module only"));
        }
        for name in [REMAINING, EXHAUSTED, START] {
            if module.exports.contains_key(name) {
                return Err(MiddlewareError::new("metering", format!("the module already exports {name:?}")));
            }
        }
        let mut add = |name: Option<&str>, ty: Type, init: GlobalInit| -> u32 {
            let index: GlobalIndex = module.globals.push(GlobalType::new(ty, Mutability::Var));
            module.global_initializers.push(init);
            if let Some(name) = name {
                module.exports.insert(name.to_string(), ExportIndex::Global(index));
            }
            index.as_u32()
        };
        let remaining = add(Some(REMAINING), Type::I64, GlobalInit::I64Const(initial_points(self.initial)));
        let exhausted = add(Some(EXHAUSTED), Type::I32, GlobalInit::I32Const(0));
        let scratch = add(None, Type::I32, GlobalInit::I32Const(0));
        if let Some(start) = module.start_function.take() {
            module.exports.insert(START.to_string(), ExportIndex::Function(start));
        }
        let imported_functions = module.num_imported_functions as u32;
        *globals = Some(Globals { remaining, exhausted, scratch, imported_functions });
        Ok(())
    }
}

/// Instruments one function. The charges depend on operators that come
/// later in the body, so the body is held back until its final `end` and
/// then handed on with the charges in place.
#[derive(Debug)]
struct FunctionMetering<'a> {
    globals: Globals,
    body: Vec<Operator<'a>>,
    /// Open blocks, loops and ifs; the function's own block is depth 1.
    depth: usize,
}

impl<'a> FunctionMiddleware<'a> for FunctionMetering<'a> {
    fn feed(&mut self, operator: Operator<'a>, state: &mut MiddlewareReaderState<'a>) -> Result<(), MiddlewareError> {
        if self.body.is_empty() {
            self.depth = 1;
        }
        match operator {
            Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } | Operator::TryTable { .. } => {
                self.depth += 1;
            }
            Operator::Try { .. } => self.depth += 1,
            Operator::End => self.depth -= 1,
            // `delegate` closes a `try` without an `end`.
            Operator::Delegate { .. } => self.depth -= 1,
            _ => {}
        }
        self.body.push(operator);
        if self.depth == 0 {
            let body = std::mem::take(&mut self.body);
            emit(body, self.globals, state);
        }
        Ok(())
    }
}

/// Hands `body` (a whole function, final `end` included) on with a charge at
/// the start of each of its regions.
fn emit<'a>(body: Vec<Operator<'a>>, globals: Globals, state: &mut MiddlewareReaderState<'a>) {
    let regions = regions(&body, globals.imported_functions);
    let mut regions = regions.iter().peekable();
    for (index, operator) in body.into_iter().enumerate() {
        if index == 0 {
            // The first region starts with the function.
            if let Some(first) = regions.next() {
                charge(first, globals, state);
            }
        }
        let grows_table = matches!(operator, Operator::TableGrow { .. });
        if is_bulk(&operator) {
            charge_length(globals, state);
        }
        state.push_operator(operator);
        if grows_table {
            note_refused_growth(globals, state);
        }
        if let Some(region) = regions.next_if(|region| region.after == Some(index)) {
            charge(region, globals, state);
        }
    }
}

/// Whether `operator` fills, copies or initialises a stretch of memory or
/// of a table whose length is its last operand.
fn is_bulk(operator: &Operator<'_>) -> bool {
    matches!(
        operator,
        Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
    )
}

/// Pushes, before a bulk operator, the charge of its length (the `i32` on
/// top of the stack, left there): a point a byte or element. The points
/// are only subtracted; the next check stops a guest that overdrew.
fn charge_length<'a>(globals: Globals, state: &mut MiddlewareReaderState<'a>) {
    state.extend([
        Operator::GlobalSet { global_index: globals.scratch },
        Operator::GlobalGet { global_index: globals.remaining },
        Operator::GlobalGet { global_index: globals.scratch },
        Operator::I64ExtendI32U,
        Operator::I64Sub,
        Operator::GlobalSet { global_index: globals.remaining },
        Operator::GlobalGet { global_index: globals.scratch },
    ]);
}

/// Pushes, after a `table.grow`, a check of its answer that sets
/// [`EXHAUSTED`] to [`TABLE_REFUSED`] when it is -1 (unless the guest is
/// already out of points), leaving the answer on the stack.
fn note_refused_growth<'a>(globals: Globals, state: &mut MiddlewareReaderState<'a>) {
    state.extend([
        Operator::GlobalSet { global_index: globals.scratch },
        Operator::GlobalGet { global_index: globals.scratch },
        Operator::I32Const { value: -1 },
        Operator::I32Eq,
        Operator::If { blockty: BlockType::Empty },
        Operator::I32Const { value: TABLE_REFUSED },
        Operator::GlobalSet { global_index: globals.exhausted },
        Operator::End,
        Operator::GlobalGet { global_index: globals.scratch },
    ]);
}

/// A stretch of a function's operators that control enters only at its
/// start: it pays for all of them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    /// The operator the region follows; `None` for the function's start.
    after: Option<usize>,
    /// Its operators, one point each.
    cost: u64,
    /// Whether its start checks that enough points are left: only where
    /// control can come back (the function's start, a loop's body). The
    /// other regions only subtract, and a check further on stops the run.
    check: bool,
}

/// What a block open at some point of a function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Function,
    Block,
    If,
    Loop,
    /// `try` or `try_table`.
    Try,
}

/// Cuts `body` into regions. A region starts where control can arrive other
/// than from the operator before: the function's start, a loop's body, an
/// `else` or `catch` arm, and past the `end` of an `if`, a `try` or a block
/// some branch targets. (Also past a loop's `end`, though control only falls
/// through there: otherwise what follows a loop would be paid for on every
/// iteration.) Inside a region control only moves forward, so each entry
/// runs a prefix of it.
fn regions(body: &[Operator<'_>], imported_functions: u32) -> Vec<Region> {
    // Exception handlers reach labels in ways this does not follow; with
    // them, every `end` starts a region.
    let exceptions = body.iter().any(|operator| {
        matches!(
            operator,
            Operator::Try { .. }
                | Operator::TryTable { .. }
                | Operator::Catch { .. }
                | Operator::CatchAll
                | Operator::Delegate { .. }
                | Operator::Throw { .. }
                | Operator::Rethrow { .. }
                | Operator::ThrowRef
        )
    });
    let mut regions = vec![Region { after: None, cost: 0, check: true }];
    // Open blocks, innermost last, each with whether a branch targets its end.
    let mut open: Vec<(Frame, bool)> = vec![(Frame::Function, false)];
    for (index, operator) in body.iter().enumerate() {
        if let Some(region) = regions.last_mut() {
            region.cost += match operator {
                Operator::Call { function_index } if *function_index < imported_functions => 1 + HOST_CALL_POINTS,
                _ => 1,
            };
        }
        let mut target = |depth: u32| {
            let frame = open.len().checked_sub(depth as usize + 1).and_then(|at| open.get_mut(at));
            if let Some((_, targeted)) = frame {
                *targeted = true;
            }
        };
        // `Some(check)` when a region starts after this operator.
        let starts = match operator {
            Operator::Block { .. } => {
                open.push((Frame::Block, false));
                None
            }
            Operator::If { .. } => {
                open.push((Frame::If, false));
                None
            }
            Operator::Try { .. } | Operator::TryTable { .. } => {
                open.push((Frame::Try, false));
                None
            }
            Operator::Loop { .. } => {
                open.push((Frame::Loop, false));
                Some(true)
            }
            Operator::Else | Operator::Catch { .. } | Operator::CatchAll => Some(false),
            Operator::End => match open.pop() {
                None | Some((Frame::Function, _)) => None,
                Some((Frame::Block, targeted)) => (targeted || exceptions).then_some(false),
                Some((Frame::If | Frame::Loop | Frame::Try, _)) => Some(false),
            },
            Operator::Delegate { .. } => {
                open.pop();
                Some(false)
            }
            Operator::Br { relative_depth }
            | Operator::BrIf { relative_depth }
            | Operator::BrOnNull { relative_depth }
            | Operator::BrOnNonNull { relative_depth }
            | Operator::BrOnCast { relative_depth, .. }
            | Operator::BrOnCastFail { relative_depth, .. } => {
                target(*relative_depth);
                None
            }
            Operator::BrTable { targets } => {
                for depth in targets.targets().flatten() {
                    target(depth);
                }
                target(targets.default());
                None
            }
            _ => None,
        };
        if let Some(check) = starts {
            regions.push(Region { after: Some(index), cost: 0, check });
        }
    }
    regions
}

/// Pushes the charge of `region`: the check, when it has one, that enough
/// points are left (trapping otherwise), then their subtraction. Points are
/// a signed count: a region without a check may take them below zero, and
/// the next check then fails. Nothing is pushed for an empty region.
fn charge<'a>(region: &Region, globals: Globals, state: &mut MiddlewareReaderState<'a>) {
    if region.cost == 0 {
        return;
    }
    let cost = region.cost.min(i64::MAX as u64) as i64;
    if region.check {
        state.extend([
            Operator::GlobalGet { global_index: globals.remaining },
            Operator::I64Const { value: cost },
            Operator::I64LtS,
            Operator::If { blockty: BlockType::Empty },
            Operator::I32Const { value: OUT_OF_POINTS },
            Operator::GlobalSet { global_index: globals.exhausted },
            Operator::Unreachable,
            Operator::End,
        ]);
    }
    state.extend([
        Operator::GlobalGet { global_index: globals.remaining },
        Operator::I64Const { value: cost },
        Operator::I64Sub,
        Operator::GlobalSet { global_index: globals.remaining },
    ]);
}

/// The points a run starts with, as the signed count the globals hold.
pub(crate) fn initial_points(budget: u64) -> i64 {
    budget.min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder};
    use wasmer::{Engine, Instance, Module, Store, TypedFunction, Value, imports};

    use super::*;

    /// Compiles `wat` with metering and `initial` points, instantiates it.
    fn instantiate(wat: &str, initial: u64) -> (Store, Instance) {
        let mut compiler = Cranelift::default();
        compiler.push_middleware(Arc::new(Metering::new(initial)));
        let engine: Engine = EngineBuilder::new(compiler).engine().into();
        let mut store = Store::new(engine);
        let module = Module::new(&store, wat).unwrap();
        let instance = Instance::new(&mut store, &module, &imports! {}).unwrap();
        (store, instance)
    }

    fn remaining(store: &mut Store, instance: &Instance) -> i64 {
        instance.exports.get_global(REMAINING).unwrap().get(store).unwrap_i64()
    }

    fn exhausted(store: &mut Store, instance: &Instance) -> bool {
        instance.exports.get_global(EXHAUSTED).unwrap().get(store).unwrap_i32() == 1
    }

    fn operators(wat: &str) -> Vec<Operator<'static>> {
        let wasm: &'static [u8] = wasmer::wat2wasm(wat.as_bytes()).unwrap().into_owned().leak();
        let mut operators = Vec::new();
        for payload in wasmer::wasmparser::Parser::new(0).parse_all(wasm) {
            if let wasmer::wasmparser::Payload::CodeSectionEntry(body) = payload.unwrap() {
                let mut reader = body.get_operators_reader().unwrap();
                while !reader.eof() {
                    operators.push(reader.read().unwrap());
                }
            }
        }
        operators
    }

    /// Counts down from its argument to zero in a loop.
    const COUNTDOWN: &str = r#"(module
        (func (export "countdown") (param $n i32)
            block $done             ;; region 1, checked: block, local.get, i32.eqz,
              local.get $n          ;; br_if, loop = 5
              i32.eqz
              br_if $done
              loop $again           ;; region 2, checked: local.get, i32.const,
                local.get $n        ;; i32.sub, local.tee, br_if, end = 6
                i32.const 1
                i32.sub
                local.tee $n
                br_if $again
              end                   ;; region 3: end = 1 (past the loop)
            end                     ;; region 4: end = 1 (past a targeted block)
        ))"#;

    #[test]
    fn regions_start_where_control_can_arrive() {
        let costs: Vec<_> =
            regions(&operators(COUNTDOWN), 0).iter().map(|region| (region.after, region.cost, region.check)).collect();
        assert_eq!(costs, [(None, 5, true), (Some(4), 6, true), (Some(10), 1, false), (Some(11), 1, false)]);
    }

    #[test]
    fn a_block_no_branch_targets_does_not_start_a_region() {
        let wat = r#"(module (func (param i32) (result i32)
            block (result i32)
              local.get 0
            end
            i32.const 1
            i32.add))"#;
        let costs: Vec<_> = regions(&operators(wat), 0).iter().map(|region| region.cost).collect();
        assert_eq!(costs, [6]);
    }

    #[test]
    fn both_arms_of_an_if_and_what_follows_are_regions() {
        let wat = r#"(module (func (param i32) (result i32)
            local.get 0             ;; start: local.get, if, i32.const, else = 4
            if (result i32)
              i32.const 1
            else
              i32.const 2           ;; the else arm: i32.const, end = 2
            end
            i32.const 3             ;; past the if: i32.const, i32.add, end = 3
            i32.add))"#;
        let costs: Vec<_> = regions(&operators(wat), 0).iter().map(|region| (region.cost, region.check)).collect();
        assert_eq!(costs, [(4, true), (2, false), (3, false)]);
    }

    #[test]
    fn a_run_pays_for_what_it_enters() {
        let (mut store, instance) = instantiate(COUNTDOWN, 1_000);
        let countdown: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "countdown").unwrap();
        countdown.call(&mut store, 10).unwrap();
        assert_eq!(remaining(&mut store, &instance), 1_000 - 5 - 10 * 6 - 1 - 1);
        assert!(!exhausted(&mut store, &instance));

        // Zero skips the loop: the first region, then the one past the block.
        countdown.call(&mut store, 0).unwrap();
        assert_eq!(remaining(&mut store, &instance), 1_000 - 67 - 5 - 1);
    }

    #[test]
    fn a_run_stops_at_the_first_check_that_finds_too_few_points() {
        // The tenth iteration's check needs 6 points; after it only unchecked
        // regions follow, which may overdraw.
        let (mut store, instance) = instantiate(COUNTDOWN, 5 + 10 * 6);
        let countdown: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "countdown").unwrap();
        countdown.call(&mut store, 10).unwrap();
        assert_eq!(remaining(&mut store, &instance), -2);

        let (mut store, instance) = instantiate(COUNTDOWN, 5 + 10 * 6 - 1);
        let countdown: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "countdown").unwrap();
        countdown.call(&mut store, 10).unwrap_err();
        assert!(exhausted(&mut store, &instance));
        // The failed check took nothing: the tenth iteration found 5 of its 6 points.
        assert_eq!(remaining(&mut store, &instance), 5);
    }

    #[test]
    fn nested_loops_each_pay_for_their_own_body() {
        let wat = r#"(module
            (func (export "grid") (param $rows i32) (param $cols i32) (local $c i32)
              loop $row               ;; function: loop = 1
                local.get $cols       ;; row: local.get, local.set, loop (of $col) = 3
                local.set $c
                loop $col             ;; col: local.get, i32.const, i32.sub, local.tee,
                  local.get $c        ;;      br_if, end = 6
                  i32.const 1
                  i32.sub
                  local.tee $c
                  br_if $col
                end                   ;; past $col: local.get, i32.const, i32.sub,
                local.get $rows       ;;      local.tee, br_if, end = 6
                i32.const 1
                i32.sub
                local.tee $rows
                br_if $row
              end                     ;; past $row: end (of function) = 1
            ))"#;
        let (mut store, instance) = instantiate(wat, 10_000);
        let grid: TypedFunction<(i32, i32), ()> = instance.exports.get_typed_function(&store, "grid").unwrap();
        grid.call(&mut store, 3, 4).unwrap();
        assert_eq!(remaining(&mut store, &instance), 10_000 - 1 - 3 * (3 + 4 * 6 + 6) - 1);
    }

    #[test]
    fn recursion_without_loops_runs_out_of_points() {
        let wat = r#"(module (func $forever (export "forever") call $forever))"#;
        let (mut store, instance) = instantiate(wat, 3_000);
        let forever: TypedFunction<(), ()> = instance.exports.get_typed_function(&store, "forever").unwrap();
        forever.call(&mut store).unwrap_err();
        assert!(exhausted(&mut store, &instance));
    }

    #[test]
    fn points_can_be_reset_between_calls() {
        let (mut store, instance) = instantiate(COUNTDOWN, 100);
        let countdown: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "countdown").unwrap();
        countdown.call(&mut store, 1_000).unwrap_err();
        assert!(exhausted(&mut store, &instance));
        let globals = &instance.exports;
        globals.get_global(REMAINING).unwrap().set(&mut store, Value::I64(100)).unwrap();
        globals.get_global(EXHAUSTED).unwrap().set(&mut store, Value::I32(0)).unwrap();
        countdown.call(&mut store, 5).unwrap();
        assert_eq!(remaining(&mut store, &instance), 100 - 5 - 5 * 6 - 1 - 1);
    }

    #[test]
    fn bulk_operators_pay_for_their_length() {
        let wat = r#"(module (memory 1)
            (func (export "fill") (param $n i32)
                (memory.fill (i32.const 0) (i32.const 7) (local.get $n))))"#;
        let (mut store, instance) = instantiate(wat, 100_000);
        let fill: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "fill").unwrap();
        fill.call(&mut store, 0).unwrap();
        let empty = 100_000 - remaining(&mut store, &instance);
        fill.call(&mut store, 60_000).unwrap();
        assert_eq!(100_000 - empty - remaining(&mut store, &instance), empty + 60_000);
    }

    #[test]
    fn budgets_beyond_the_signed_range_are_capped() {
        assert_eq!(initial_points(u64::MAX), i64::MAX);
        let (mut store, instance) = instantiate(COUNTDOWN, u64::MAX);
        let countdown: TypedFunction<i32, ()> = instance.exports.get_typed_function(&store, "countdown").unwrap();
        countdown.call(&mut store, 3).unwrap();
        assert_eq!(remaining(&mut store, &instance), i64::MAX - 5 - 3 * 6 - 1 - 1);
    }

    #[test]
    fn a_module_exporting_the_budget_names_is_refused() {
        let wat = format!(r#"(module (global (export "{REMAINING}") i32 (i32.const 0)))"#);
        let mut compiler = Cranelift::default();
        compiler.push_middleware(Arc::new(Metering::new(10)));
        let engine: Engine = EngineBuilder::new(compiler).engine().into();
        let err = Module::new(&Store::new(engine), wat).unwrap_err();
        assert!(err.to_string().contains(REMAINING), "{err}");
    }
}
