//! The `#[function]` attribute of `scale-guest`. Use it as
//! `#[scale_guest::function]`; see that crate for the guide.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type, parse_macro_input};

/// Exports a handler as this guest's Scale function.
///
/// The handler is a plain function taking `&mut scale_guest::Context` and
/// returning `Result<(), E>` for any `E: Display`:
///
/// ```ignore
/// #[scale_guest::function]
/// fn scale(ctx: &mut Context) -> Result<(), Error> {
///     ctx.response().set_body_string("Hello, World!");
///     ctx.next()
/// }
/// ```
///
/// The attribute keeps the function as written (so it can be called from
/// native unit tests) and, on `wasm32`, defines the ABI's exports around it.
/// A guest has exactly one handler.
#[proc_macro_attribute]
pub fn function(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    if !attr.is_empty() {
        let err = syn::Error::new(attr.span(), "#[scale_guest::function] takes no arguments").to_compile_error();
        let item = proc_macro2::TokenStream::from(item);
        return quote!(#item #err).into();
    }
    let function = parse_macro_input!(item as ItemFn);
    match expand(&function) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let err = err.to_compile_error();
            quote!(#function #err).into()
        }
    }
}

fn expand(function: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    check_signature(function)?;
    let ident = &function.sig.ident;
    // A second handler in the same module defines this marker again, which
    // rustc reports at the second handler's name. (Handlers in different
    // modules collide on the `run` export at link time instead.)
    let marker = quote_spanned! {ident.span()=>
        #[doc(hidden)]
        #[allow(dead_code, non_camel_case_types)]
        struct __scale_guest_function_is_defined_once_per_guest;
    };
    Ok(quote! {
        #function
        #marker
        ::scale_guest::__private::scale_guest_abi::export_abi!(
            |input: &[u8], output: &mut ::scale_guest::__private::Vec<u8>| {
                ::scale_guest::__private::run(input, output, #ident)
            }
        );
    })
}

fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(asyncness.span(), "a Scale function cannot be async"));
    }
    if let Some(unsafety) = &sig.unsafety {
        return Err(syn::Error::new(unsafety.span(), "a Scale function cannot be unsafe"));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(abi.span(), "a Scale function is a plain Rust fn; remove the extern ABI"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(sig.generics.span(), "a Scale function cannot be generic"));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new(variadic.span(), "a Scale function cannot be variadic"));
    }
    let mut inputs = sig.inputs.iter();
    let expected = "a Scale function takes one argument, `ctx: &mut Context`";
    match (inputs.next(), inputs.next()) {
        (Some(FnArg::Typed(arg)), None) => match &*arg.ty {
            Type::Reference(reference) if reference.mutability.is_some() => {}
            other => {
                return Err(syn::Error::new(other.span(), "the context must be taken as `&mut Context`"));
            }
        },
        (Some(FnArg::Receiver(receiver)), _) => {
            return Err(syn::Error::new(receiver.span(), "a Scale function is a free function, not a method"));
        }
        (None, _) => return Err(syn::Error::new(sig.paren_token.span.join(), expected)),
        (Some(_), Some(extra)) => return Err(syn::Error::new(extra.span(), expected)),
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            Span::call_site().located_at(sig.paren_token.span.close()),
            "a Scale function returns `Result<(), E>` (for example `Result<(), scale_guest::Error>`)",
        ));
    }
    Ok(())
}
