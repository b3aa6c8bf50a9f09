//! `quintet`: see the crate's library for the wiring; this only starts it.

fn main() -> std::process::ExitCode {
    quintet::main()
}
