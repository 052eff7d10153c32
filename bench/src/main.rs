//! `bench`: parse the options, run the benchmark, and end with a one-line error and a non-zero
//! status when a measurement did not work (a missed target is a result, not an error).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let options = bench::Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run_until_interrupted(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
