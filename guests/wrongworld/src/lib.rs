//! A well-formed component that is not a Reprise workflow: it exports `add`
//! instead of `run`. The host must refuse to deploy it, naming what is
//! missing.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export add: func(a: u32, b: u32) -> u32;
        }
    ",
});

struct Component;

impl Guest for Component {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(Component);
