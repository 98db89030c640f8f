//! Shared helpers for the router tests.
#![allow(dead_code)]

use dataplane::batch::{Batch, Out};
use dataplane::buf::Pool;
use dataplane::stage::Pipeline;
use vnf_router::{Config, Router};

pub const EXAMPLE: &str = include_str!("../../examples/router.toml");

pub fn router() -> Router {
    let cfg = Config::from_toml(EXAMPLE).unwrap();
    Router::build(&cfg, &[], None).unwrap()
}

/// Runs each (port, frame) through a fresh pipeline; returns what left each port.
pub fn run_frames(r: &Router, frames: &[(u16, Vec<u8>)]) -> (Vec<Vec<Vec<u8>>>, Pipeline) {
    let pool = Pool::new(4096).unwrap();
    let mut out = Out::new(2, pool.cache());
    out.now_ns = 1_000_000_000;
    let mut pl = r.pipeline();
    let mut res = vec![Vec::new(), Vec::new()];
    for (port, f) in frames {
        let mut b = Batch::new();
        let mut p = out.cache.alloc().unwrap();
        p.copy_from(f).unwrap();
        p.meta.port = *port;
        b.push(p).unwrap();
        pl.run(&mut b, &mut out);
        b.free_all(&mut out.cache);
        for (i, tx) in out.ports.iter_mut().enumerate() {
            let mut got = Vec::new();
            tx.drain(|p| got.push(p));
            for p in got {
                res[i].push(p.data().to_vec());
                out.cache.free(p);
            }
        }
        out.punt.free_all(&mut out.cache);
    }
    (res, pl)
}
