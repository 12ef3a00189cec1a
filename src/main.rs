//! The `consentgate` binary: parse the command line and dispatch. Everything else
//! lives in the library so that tests build exactly what runs.

/// mimalloc instead of the system allocator: the hot paths allocate per request
/// and per row, and glibc's malloc cost the bulk import a fifth of its CPU (see
/// BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    consentgate::cli::run()
}
