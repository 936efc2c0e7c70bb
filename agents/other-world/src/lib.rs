//! `other-world`: a component of the world `other:thing/greeter`, which
//! exports `hello` instead of `run`. A wawe host must refuse to load it.

wit_bindgen::generate!({
    world: "greeter",
    path: "wit",
});

/// The component.
struct Greeter;

impl Guest for Greeter {
    fn hello() -> String {
        "hello from another world".to_owned()
    }
}

export!(Greeter);
