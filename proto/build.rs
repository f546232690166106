//! Compiles `procshare.proto` with the vendored `protoc`, so a fresh machine
//! needs nothing but cargo.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Our codec: prost's, decoding from one slice (see src/codec.rs).
        .codec_path("crate::codec::SliceCodec")
        .file_descriptor_set_path(out.join("procshare_descriptor.bin"))
        .compile_protos(&["procshare.proto"], &["."])?;
    println!("cargo:rerun-if-changed=procshare.proto");
    Ok(())
}
