use clap::Parser;

fn main() {
    let cli = localgpt::cli::Cli::parse();
    std::process::exit(localgpt::cli::run(cli));
}
