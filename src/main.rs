//! The `consentgate` binary: parse the command line and dispatch. Everything else
//! lives in the library so that tests build exactly what runs.

fn main() -> std::process::ExitCode {
    consentgate::cli::run()
}
