//! The lab's FreeRADIUS 3.2 instance: a generated config (N users: `user<i>`, or the
//! MAC of an IPoE subscriber; accounting to `detail` files, one log line per
//! authentication) started on the bng namespace's loopback, and what it recorded
//! (RFC 2865 Access, RFC 2866 Accounting).

use super::*;

/// The FreeRADIUS instance of the lab: config dir and log file.
pub(super) struct FreeRadius {
    pub(super) dir: PathBuf,
    pub(super) log: PathBuf,
}

/// The default site, reduced to what the lab uses: PAP/CHAP against the `files`
/// users, accounting to `detail`.
const SITE: &str = r#"server default {
listen {
	type = auth
	ipaddr = 127.0.0.1
	port = 1812
}
listen {
	type = acct
	ipaddr = 127.0.0.1
	port = 1813
}
authorize {
	preprocess
	chap
	files
	pap
}
authenticate {
	Auth-Type PAP {
		pap
	}
	Auth-Type CHAP {
		chap
	}
}
preacct {
	preprocess
	acct_unique
}
accounting {
	detail
}
post-auth {
	# vbng requires a Message-Authenticator in Access replies (RFC 3579 §3.2,
	# BlastRADIUS); FreeRADIUS before 3.2.5 sends one only when told to.
	update reply {
		&Message-Authenticator := 0x00
	}
	Post-Auth-Type REJECT {
		attr_filter.access_reject
		update reply {
			&Message-Authenticator := 0x00
		}
	}
}
}
"#;

impl FreeRadius {
    /// Writes the config under `dir` for the users `names` (password [`PASSWORD`]):
    /// `user<i>` for PPPoE subscribers, MACs for IPoE ones.
    pub(super) fn configure(dir: &Path, names: &[String]) -> anyhow::Result<FreeRadius> {
        let src = Path::new("/etc/freeradius/3.0");
        if !src.join("radiusd.conf").exists() {
            bail!("/etc/freeradius/3.0 not found: apt-get install freeradius");
        }
        let rdir = dir.join("freeradius");
        netns::sh(&[
            "cp",
            "-a",
            &src.display().to_string(),
            &rdir.display().to_string(),
        ])?;
        std::fs::write(
            rdir.join("clients.conf"),
            format!("client vbng {{\n\tipaddr = 127.0.0.1\n\tsecret = {SECRET}\n\trequire_message_authenticator = yes\n}}\n"),
        )?;
        let mut users = String::with_capacity(names.len() * 48);
        for u in names {
            // Quoted: MAC user names have colons.
            users.push_str(&format!("\"{u}\"\tCleartext-Password := \"{PASSWORD}\"\n"));
        }
        std::fs::write(rdir.join("mods-config/files/authorize"), users)?;
        let conf = rdir.join("radiusd.conf");
        let d = rdir.display();
        let c = std::fs::read_to_string(&conf)?
            .replace("logdir = /var/log/freeradius", &format!("logdir = {d}/log"))
            .replace(
                "run_dir = ${localstatedir}/run/${name}",
                &format!("run_dir = {d}/run"),
            )
            .replace("reject_delay = 1", "reject_delay = 0")
            // Requests are remembered for cleanup_delay after the reply: room for a
            // whole setup wave plus its accounting.
            .replace("max_requests = 16384", "max_requests = 1048576")
            .replace("\tauth = no", "\tauth = yes");
        std::fs::write(&conf, c)?;
        std::fs::write(rdir.join("sites-enabled/default"), SITE)?;
        let _ = std::fs::remove_file(rdir.join("sites-enabled/inner-tunnel"));
        // EAP needs an `Auth-Type EAP` section our site does not have.
        let _ = std::fs::remove_file(rdir.join("mods-enabled/eap"));
        std::fs::create_dir_all(rdir.join("log/radacct"))?;
        std::fs::create_dir_all(rdir.join("run"))?;
        netns::sh(&["chown", "-R", "freerad:freerad", &d.to_string()])
            .context("chown to freerad (the user FreeRADIUS drops privileges to)")?;
        Ok(FreeRadius {
            log: dir.join("freeradius.log"),
            dir: rdir,
        })
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(super) fn wait_ready(&self, pid: u32) -> anyhow::Result<()> {
        let t0 = Instant::now();
        while !self.log_text().contains("Ready to process requests") {
            if !alive(pid) {
                bail!("freeradius exited:\n{}", tail(&self.log_text(), 30));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("freeradius not ready:\n{}", tail(&self.log_text(), 30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Counts what the server recorded.
    pub(super) fn facts(&self) -> RadiusFacts {
        let log = self.log_text();
        let mut f = RadiusFacts {
            access_accepts: log.matches("Login OK").count() as u64,
            access_rejects: log.matches("Login incorrect").count() as u64,
            ..RadiusFacts::default()
        };
        let mut stack = vec![self.dir.join("log/radacct")];
        while let Some(p) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&p) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(t) = std::fs::read_to_string(&p) {
                    f.acct_starts += t.matches("Acct-Status-Type = Start").count() as u64;
                    f.acct_stops += t.matches("Acct-Status-Type = Stop").count() as u64;
                    f.acct_interims +=
                        t.matches("Acct-Status-Type = Interim-Update").count() as u64;
                }
            }
        }
        f
    }
}
