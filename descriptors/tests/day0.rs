//! The day-0 configuration a package ships is the VNF's own example config, and the
//! VNF accepts it.

#[test]
fn router_and_vbng_day0_parse_in_the_vnfs() {
    let r = descriptors::vnfs::builtin("router").expect("router model");
    vnf_router::Config::from_toml(&r.day0.toml).expect("router day-0 config");
    let b = descriptors::vnfs::builtin("vbng").expect("vbng model");
    vbng::config::Config::from_toml(&b.day0.toml).expect("vbng day-0 config");
}
