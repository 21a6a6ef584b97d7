//! Two `Function::call_async` runs, each in its own store, interleaved on
//! one current-thread tokio runtime. Each guest awaits an async import
//! (a tokio sleep of N ms) and then executes `unreachable`.
//! `first-resumes-first`: run 1 sleeps 10 ms, run 2 sleeps 50 ms, so run 1
//! resumes while run 2 is still suspended on the same thread.
//! `last-resumes-first`: the other way round (resumption in LIFO order).
use std::time::Duration;
use wasmer::{Function, Instance, Module, Store, TypedFunction, Value, imports};

const WAT: &str = r#"(module
  (import "env" "wait" (func $wait (param i32)))
  (memory 1)
  (func (export "go") (param i32)
    local.get 0
    call $wait
    i32.const 0x7fff0000
    i32.load
    drop))"#;

fn run(store: Store, module: &Module, ms: i32) -> impl std::future::Future<Output = String> + use<> {
    let mut store = store;
    let wait = Function::new_typed_async(&mut store, |ms: i32| async move {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    });
    let instance = Instance::new(&mut store, module, &imports! { "env" => { "wait" => wait } }).unwrap();
    let go = instance.exports.get_function("go").unwrap().clone();
    let _typed: TypedFunction<i32, ()> = go.typed(&store).unwrap();
    let store = store.into_async();
    async move {
        match go.call_async(&store, vec![Value::I32(ms)]).await {
            Ok(_) => format!("{ms} ms: returned"),
            Err(err) => format!("{ms} ms: trapped cleanly: {}", err.message()),
        }
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let (a, b) = match mode.as_str() {
        "first-resumes-first" => (10, 50),
        "last-resumes-first" => (50, 10),
        "single" => (10, 0),
        _ => panic!("mode: first-resumes-first | last-resumes-first | single"),
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let store = Store::default();
    let module = Module::new(&store, WAT).unwrap();
    let one = run(Store::new(store.engine().clone()), &module, a);
    if b == 0 {
        println!("{}", tokio.block_on(one));
        return;
    }
    let two = run(Store::new(store.engine().clone()), &module, b);
    let local = tokio::task::LocalSet::new();
    let (x, y) = local.block_on(&tokio, async {
        let first = tokio::task::spawn_local(one);
        // Let run 1 suspend in its import before run 2 starts.
        tokio::task::yield_now().await;
        let second = tokio::task::spawn_local(two);
        (first.await.unwrap(), second.await.unwrap())
    });
    println!("{x}\n{y}");
}
