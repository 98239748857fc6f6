//! The `#[workflow]` attribute of `reprise-sdk`. Use it through
//! `reprise_sdk::workflow`; see that crate for documentation.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input, spanned::Spanned};

/// Marks the function a component exports as its workflow. See
/// `reprise_sdk::workflow`.
#[proc_macro_attribute]
pub fn workflow(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::TokenStream::from(attr).span(),
            "#[workflow] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    let sig = &func.sig;
    let problem = if sig.asyncness.is_some() {
        Some("a workflow is plain sequential code: remove `async`")
    } else if sig.inputs.len() != 2 {
        Some("a workflow takes two arguments: `(ctx: &Context, input: YourInput)`")
    } else if !sig.generics.params.is_empty() {
        Some("a workflow cannot be generic")
    } else {
        None
    };
    if let Some(msg) = problem {
        return syn::Error::new(sig.span(), msg).to_compile_error().into();
    }
    let name = &sig.ident;
    quote! {
        #func

        #[doc(hidden)]
        pub struct __RepriseWorkflow;

        impl ::reprise_sdk::__private::Guest for __RepriseWorkflow {
            fn run(input: ::std::vec::Vec<u8>) -> ::std::result::Result<::std::vec::Vec<u8>, ::reprise_sdk::__private::WireError> {
                ::reprise_sdk::__private::run(&input, #name)
            }
        }

        ::reprise_sdk::__private::export_workflow!(__RepriseWorkflow with_types_in ::reprise_sdk::__private::bindings);
    }
    .into()
}
