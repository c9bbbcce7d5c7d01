use clap::Parser;

fn main() {
    let cli = localgpt::cli::Cli::parse();
    let code = localgpt::cli::run(cli);
    // Log lines are written a moment late (see logging::Deferred); none may be lost.
    localgpt::logging::flush();
    std::process::exit(code);
}
