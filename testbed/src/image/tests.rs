//! Tests of the image tooling: net specs, the ready line, the Multiboot header,
//! the lab config and ISO dates.

use super::*;

#[test]
fn netspec_parses_tap_and_udp() {
    assert_eq!(
        NetSpec::parse("tap:uk0", 0).unwrap(),
        NetSpec::Tap {
            ifname: "uk0".into(),
            mac: "02:00:00:00:00:01".into()
        }
    );
    assert_eq!(
        NetSpec::parse("udp:5000:5001,mac=02:aa:00:00:00:01", 3).unwrap(),
        NetSpec::Udp {
            local: 5000,
            peer: 5001,
            mac: "02:aa:00:00:00:01".into()
        }
    );
    assert_eq!(
        NetSpec::parse("user:19100-9100:19180-9180", 2).unwrap(),
        NetSpec::User {
            fwd: vec![(19100, 9100), (19180, 9180)],
            udp: vec![],
            mac: "02:00:00:00:00:03".into()
        }
    );
    assert_eq!(
        NetSpec::parse("user", 0).unwrap(),
        NetSpec::User {
            fwd: vec![],
            udp: vec![],
            mac: "02:00:00:00:00:01".into()
        }
    );
    assert_eq!(
        NetSpec::parse("user:19100-9100:17500-500/udp", 0).unwrap(),
        NetSpec::User {
            fwd: vec![(19100, 9100)],
            udp: vec![(17500, 500)],
            mac: "02:00:00:00:00:01".into()
        }
    );
    assert!(NetSpec::parse("user:17500/udp", 0).is_err());
    assert!(NetSpec::parse("user:19100", 0).is_err());
    assert!(NetSpec::parse("udp:x:1", 0).is_err());
    assert!(NetSpec::parse("vde:sw", 0).is_err());
    assert!(NetSpec::parse("tap:uk0,speed=10", 0).is_err());
}

#[test]
fn netspec_vhost_user_gives_a_shared_memory_backend_and_a_vhost_user_netdev() {
    let n = NetSpec::parse("vhost-user:/tmp/v0.sock,mac=02:aa:00:00:00:02", 0).unwrap();
    assert_eq!(
        n,
        NetSpec::VhostUser {
            path: "/tmp/v0.sock".into(),
            mac: "02:aa:00:00:00:02".into()
        }
    );
    assert!(NetSpec::parse("vhost-user:", 0).is_err());
    assert!(NetSpec::parse("vhost-user:/tmp/a,b.sock", 0).is_err());
    if std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
        != Some(true)
    {
        eprintln!("skipped the command-line half: qemu-system-x86_64 not installed");
        return;
    }
    let g = Guest {
        machine: Machine::Microvm,
        memory: "128M".into(),
        accel: Accel::Tcg,
        kernel: "k.elf".into(),
        disk: None,
        initrd: None,
        append: String::new(),
        nets: vec![n],
        pcap_dir: Some("/tmp/p".into()),
        fw_cfg: Vec::new(),
        drives: Vec::new(),
    };
    let c = g.command().unwrap();
    let args: Vec<String> = c
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let has = |x: &str| args.iter().any(|a| a == x);
    assert!(
        has("memory-backend-memfd,id=mem,size=128M,share=on"),
        "{args:?}"
    );
    assert!(has("microvm,memory-backend=mem"), "{args:?}");
    assert!(
        has("socket,id=c0,path=/tmp/v0.sock,reconnect=1"),
        "{args:?}"
    );
    assert!(has("vhost-user,id=n0,chardev=c0"), "{args:?}");
    assert!(!args.iter().any(|a| a.contains("filter-dump")), "{args:?}");
}

#[test]
fn ready_line_and_median() {
    assert_eq!(
        parse_ready_ms("router ready in 3.512 ms (2 ports, heap peak 10 KiB)"),
        Some(3.512)
    );
    assert_eq!(parse_ready_ms("router starting"), None);
    assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
}

#[test]
fn multiboot_header_is_found_and_neutralised() {
    let mut elf = vec![0u8; 4096];
    let flags = 0x0001_0003u32;
    let hdr = [
        MULTIBOOT_MAGIC,
        flags,
        0u32.wrapping_sub(MULTIBOOT_MAGIC.wrapping_add(flags)),
    ];
    for (i, w) in hdr.iter().enumerate() {
        elf[0x1000 - 64 + 4 * i..0x1000 - 60 + 4 * i].copy_from_slice(&w.to_le_bytes());
    }
    assert_eq!(multiboot_offset(&elf), Some(0x1000 - 64));
    let pvh = without_multiboot(&elf).unwrap();
    assert_eq!(multiboot_offset(&pvh), None);
    assert_eq!(pvh.len(), elf.len());
    // A magic with a wrong checksum is not a header.
    elf[0x1000 - 56] ^= 1;
    assert_eq!(multiboot_offset(&elf), None);
    assert!(without_multiboot(&elf).is_err());
}

#[test]
fn lab_config_is_a_valid_router_config() {
    let t = lab::router_config();
    assert!(
        t.contains("10.61.1.1/24") && t.contains("02:00:00:00:0b:02"),
        "{t}"
    );
    let v: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    assert!(v.is_empty());
}

#[test]
fn iso_dates_from_epoch() {
    assert_eq!(iso_date("0").unwrap(), "1970010100000000");
    assert_eq!(iso_date("1700000000").unwrap(), "2023111422132000");
    assert_eq!(iso_date("951782400").unwrap(), "2000022900000000");
    assert!(iso_date("soon").is_err());
}

#[test]
fn unknown_vnf_is_an_error() {
    let e = example_config("toaster").unwrap_err().to_string();
    assert!(e.contains("router"), "{e}");
}
