use scale_guest::Context;

#[derive(Debug)]
struct MyError;

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mine")
    }
}

#[scale_guest::function]
fn handler(_ctx: &mut Context) -> Result<(), MyError> {
    Err(MyError)
}

fn main() {}
