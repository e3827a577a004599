//! The `damacy` command-line tool (bench, read, inspect, gen). Not yet written.

fn main() {
    eprintln!("damacy: the CLI is not built yet (see the README's status section)");
    std::process::exit(2);
}
