//! The `consentgate` binary: parse the command line and dispatch. Everything else
//! lives in the library so that tests build exactly what runs.

/// mimalloc instead of glibc's malloc: the check path allocates a few dozen
/// small blocks per request, and glibc's allocator was about a twelfth of the
/// server's CPU under load (BENCHMARKS.md, session 6).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    consentgate::cli::run()
}
