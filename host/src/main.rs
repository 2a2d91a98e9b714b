//! The `gateway-host` binary; everything lives in the library, see [`gateway_host::cli`].

fn main() -> std::process::ExitCode {
    gateway_host::cli::main()
}
