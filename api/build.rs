fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = vec!["proto/loci.proto".to_string(), "proto/dakera.proto".to_string()];
    // loci.v1's typed services, one file per concern.
    let mut typed: Vec<String> = std::fs::read_dir("proto/loci/v1")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    typed.sort();
    files.extend(typed);
    let fds = protox::compile(&files, ["proto"])?;
    // For gRPC server reflection and the typed front's JSON transcoding: the public services'
    // descriptors (with the well-known types they import).
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("public_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
