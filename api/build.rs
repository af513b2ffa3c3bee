fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/loci.proto");
    println!("cargo:rerun-if-changed=proto/dakera.proto");
    let fds = protox::compile(["proto/loci.proto", "proto/dakera.proto"], ["proto"])?;
    // For gRPC server reflection: the public services' descriptors.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("public_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
