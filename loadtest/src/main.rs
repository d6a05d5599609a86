fn main() {
    eprintln!("loadtest: not implemented yet (issue 4)");
    std::process::exit(2);
}
