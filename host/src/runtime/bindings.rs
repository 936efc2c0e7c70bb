//! Host-side bindings for the `agent` world of the `wawe:env` WIT package.

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "agent",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "wawe:env/workspace.file-writer": super::caps::workspace::FileWriter,
    },
});
