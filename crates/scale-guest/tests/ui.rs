//! The handler macro's compile errors point at the offending code.

#[test]
fn handler_macro_ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass-*.rs");
    cases.compile_fail("tests/ui/fail-*.rs");
}
