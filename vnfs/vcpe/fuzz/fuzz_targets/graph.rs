//! Fuzz target: arbitrary frames into the vCPE's graph (site A of the examples, a
//! static tunnel, NAT, firewall, DHCP server) on the LAN or WAN port (the first
//! byte picks the port and whether the frame goes to the control plane as a punt
//! would), and whatever is punted into its control plane. Nothing may panic.
#![no_main]

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};

struct State {
    graph: dataplane::stage::Pipeline,
    control: vcpe::control::ControlPlane,
    out: Out,
    now: u64,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let cfg = vcpe::Config::from_toml(include_str!("../../examples/vcpe-a.toml"))
            .expect("example config");
        let b = vcpe::vnf::build(&cfg).expect("build");
        let pool = Pool::new(4096).expect("pool");
        Mutex::new(State {
            graph: b.graph,
            control: b.control,
            out: Out::new(2, pool.cache()),
            now: 1_000,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let Ok(mut s) = state().lock() else {
        return;
    };
    let s = &mut *s;
    let port = u16::from(sel & 1);
    s.now += 1;
    if sel & 2 != 0 {
        s.control.handle_frame(port, frame, s.now);
    } else if let Some(mut p) = s.out.cache.alloc() {
        if p.copy_from(frame).is_ok() {
            p.meta.port = port;
            let mut b = Batch::new();
            let _ = b.push(p);
            s.out.now_ns = s.now * 1_000_000;
            s.graph.run(&mut b, &mut s.out);
            b.free_all(&mut s.out.cache);
        } else {
            s.out.cache.free(p);
        }
    }
    let mut punted = Vec::new();
    s.out.punt.drain(|p| punted.push(p));
    for p in punted {
        s.control.handle_frame(p.meta.port, p.data(), s.now);
        s.out.cache.free(p);
    }
    for tx in s.out.ports.iter_mut() {
        tx.free_all(&mut s.out.cache);
    }
    s.control.poll(s.now);
    let _ = s.control.take_frames();
});
