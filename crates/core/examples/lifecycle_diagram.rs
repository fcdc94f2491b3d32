//! Prints the lifecycle table as the Mermaid diagram the README embeds.
fn main() {
    print!("{}", ktm_core::lifecycle::mermaid_diagram());
}
