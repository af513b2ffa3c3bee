fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/loci.proto");
    println!("cargo:rerun-if-changed=proto/dakera.proto");
    let fds = protox::compile(["proto/loci.proto", "proto/dakera.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
