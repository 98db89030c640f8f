//! The generic part of the VNFs' RESTCONF-shaped JSON management APIs (RFC 8040 over
//! RFC 7951 JSON): data paths with list keys (RFC 8040 §3.5.3, percent-decoded), the
//! JSON tree helpers a VNF's API applies a change with (find, RFC 7951 merge, the
//! PUT/PATCH/POST/DELETE edit of §4.4–§4.7), the §7.1 error bodies and the media type
//! (§11.3.2). Each VNF keeps its own YANG module and the mapping between its tree and
//! its configuration; a [`Schema`] names the module and the key leaf of each list.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use serde_json::{json, Map, Value};

/// The media type of RESTCONF JSON (RFC 8040 §11.3.2).
pub const MEDIA: &str = "application/yang-data+json";

/// An API answer: status and body (JSON, empty for 204, or a YANG module's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body (JSON, or the YANG text for the schema resource).
    pub body: String,
}

impl Answer {
    /// A JSON answer.
    pub fn json(status: u16, v: &Value) -> Answer {
        Answer {
            status,
            body: v.to_string(),
        }
    }
    /// An answer without a body (201, 204).
    pub fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: String::new(),
        }
    }
}

/// An RFC 8040 §7.1 error: `{"ietf-restconf:errors":{"error":[{…}]}}`.
pub fn error(status: u16, etype: &str, tag: &str, path: &str, msg: &str) -> Answer {
    let mut e = json!({
        "error-type": etype,
        "error-tag": tag,
        "error-message": msg,
    });
    if !path.is_empty() {
        e["error-path"] = Value::String(path.to_string());
    }
    Answer::json(status, &json!({"ietf-restconf:errors": {"error": [e]}}))
}

/// 400 `invalid-value` (application).
pub fn invalid(path: &str, msg: &str) -> Answer {
    error(400, "application", "invalid-value", path, msg)
}

/// 400 `malformed-message` (protocol).
pub fn malformed(msg: &str) -> Answer {
    error(400, "protocol", "malformed-message", "", msg)
}

/// 404 `invalid-value`: no such resource.
pub fn missing(path: &str) -> Answer {
    error(404, "protocol", "invalid-value", path, "no such resource")
}

/// `operation-not-supported` with `status` (405 for a method, 501 for a change the
/// running VNF cannot make).
pub fn unsupported(status: u16, msg: &str) -> Answer {
    error(status, "protocol", "operation-not-supported", "", msg)
}

/// The `/restconf` API root (RFC 8040 §3.3).
pub fn root() -> Answer {
    Answer::json(
        200,
        &json!({"ietf-restconf:restconf": {
            "data": {}, "operations": {}, "yang-library-version": "2019-01-04"
        }}),
    )
}

/// What every VNF's API answers the same way. `path` must start with `/restconf`.
/// The API root (GET only, RFC 8040 §3.3) and the module's YANG text at
/// `/restconf/yang/MODULE` are answered here as `Err`. Any other path comes back
/// as `Ok`, with `/restconf` and trailing slashes removed.
pub fn front<'a>(method: &str, path: &'a str, module: &str, yang: &str) -> Result<&'a str, Answer> {
    let Some(rest) = path.strip_prefix("/restconf") else {
        return Err(missing(path));
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        if method != "GET" {
            return Err(unsupported(405, "the API root is read-only"));
        }
        return Err(root());
    }
    if rest.strip_prefix("/yang/") == Some(module) {
        return Err(Answer {
            status: 200,
            body: yang.to_string(),
        });
    }
    Ok(rest)
}

/// Percent-decoding of a key value in a path (RFC 8040 §3.5.3).
pub fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = core::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One step of a data path: a node name, with a key for a list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub name: String,
    pub key: Option<String>,
}

/// A 64-bit integer leaf: RFC 7951 §6.1 encodes it as a string; a number is taken.
/// A missing leaf is 0.
pub fn u64_of(v: Option<&Value>) -> Result<u64, String> {
    match v {
        None => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| format!("{s:?} is not a uint64")),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("{n} is not a uint64")),
        Some(other) => Err(format!("{other} is not a uint64")),
    }
}

/// The string leaf `k` of `e`.
pub fn str_of<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
    e.get(k).and_then(Value::as_str)
}

/// The `content` query parameter (RFC 8040 §4.8.1): `all`, `config` or `nonconfig`.
pub fn content_of(query: &str) -> Result<&str, Answer> {
    let c = query
        .split('&')
        .find_map(|q| q.strip_prefix("content="))
        .unwrap_or("all");
    if matches!(c, "all" | "config" | "nonconfig") {
        Ok(c)
    } else {
        Err(invalid("", "content must be all, config or nonconfig"))
    }
}

/// A VNF's YANG module as the generic code needs it: the module name (the top
/// container has the same name) and the key leaf of each list.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Module name (the JSON namespace qualifier, RFC 7951 §4).
    pub module: &'static str,
    /// `(list, key leaf)` of every list of the module.
    pub keys: &'static [(&'static str, &'static str)],
}

impl Schema {
    /// The key leaf of `list`.
    pub fn list_key(&self, list: &str) -> Option<&'static str> {
        self.keys.iter().find(|(l, _)| *l == list).map(|(_, k)| *k)
    }

    /// The steps below `MODULE:MODULE` of a data path; `None` when malformed or
    /// outside the module.
    pub fn parse_path(&self, p: &str) -> Option<Vec<Step>> {
        let p = p.trim_end_matches('/');
        let top = format!("{0}:{0}", self.module);
        let rest = p.strip_prefix(top.as_str())?;
        if rest.is_empty() {
            return Some(Vec::new());
        }
        let rest = rest.strip_prefix('/')?;
        let prefix = format!("{}:", self.module);
        let mut v = Vec::new();
        for seg in rest.split('/') {
            // A child may repeat the module prefix (RFC 8040 §3.5.3).
            let seg = seg.strip_prefix(prefix.as_str()).unwrap_or(seg);
            let (name, key) = match seg.split_once('=') {
                Some((n, k)) => (n, Some(pct_decode(k)?)),
                None => (seg, None),
            };
            if name.is_empty() || (key.is_some() && self.list_key(name).is_none()) {
                return None;
            }
            v.push(Step {
                name: name.to_string(),
                key,
            });
        }
        Some(v)
    }

    /// The path text of `steps` (`/MODULE:MODULE/a/b=k`).
    pub fn steps_text(&self, steps: &[Step]) -> String {
        let mut s = format!("/{0}:{0}", self.module);
        for x in steps {
            s.push('/');
            s.push_str(&x.name);
            if let Some(k) = &x.key {
                s.push('=');
                s.push_str(k);
            }
        }
        s
    }

    /// The key of list entry `e` of `list`, as text.
    pub fn key_of(&self, list: &str, e: &Value) -> Option<String> {
        let k = e.get(self.list_key(list)?)?;
        Some(match k {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The entry of `list` (the JSON array named `name`) with key `key`.
    pub fn entry<'a>(&self, list: &'a Value, name: &str, key: &str) -> Option<&'a Value> {
        list.as_array()?
            .iter()
            .find(|e| self.key_of(name, e).as_deref() == Some(key))
    }

    /// The value at `steps` in `root`.
    pub fn find<'a>(&self, root: &'a Value, steps: &[Step]) -> Option<&'a Value> {
        let mut cur = root;
        for s in steps {
            let child = cur.get(&s.name)?;
            cur = match &s.key {
                Some(k) => self.entry(child, &s.name, k)?,
                None => child,
            };
        }
        Some(cur)
    }

    /// The parent of `steps`' last node (a container or list entry), mutable.
    fn parent_mut<'a>(
        &self,
        root: &'a mut Value,
        steps: &[Step],
    ) -> Option<&'a mut Map<String, Value>> {
        let mut cur = root;
        for s in steps {
            let child = cur.get_mut(&s.name)?;
            cur = match &s.key {
                Some(k) => child
                    .as_array_mut()?
                    .iter_mut()
                    .find(|e| self.key_of(&s.name, e).as_deref() == Some(k.as_str()))?,
                None => child,
            };
        }
        cur.as_object_mut()
    }

    /// RFC 7951 merge of `src` into `dst` (a node named `name`): objects member by
    /// member, lists entry by entry by key, leaves replaced.
    pub fn merge(&self, dst: &mut Value, src: &Value, name: &str) {
        match (dst, src) {
            (Value::Object(d), Value::Object(s)) => {
                for (k, v) in s {
                    match d.get_mut(k) {
                        Some(x) => self.merge(x, v, k),
                        None => {
                            d.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
            (Value::Array(d), Value::Array(s)) if self.list_key(name).is_some() => {
                for v in s {
                    let k = self.key_of(name, v);
                    match d
                        .iter_mut()
                        .find(|e| k.is_some() && self.key_of(name, e) == k)
                    {
                        Some(x) => self.merge(x, v, name),
                        None => d.push(v.clone()),
                    }
                }
            }
            (d, s) => *d = s.clone(),
        }
    }

    /// The member `name` of a request body, with or without the module qualifier
    /// (RFC 7951 §4: the top-level member must be qualified; both are accepted).
    pub fn body_member<'a>(&self, body: &'a Value, name: &str) -> Option<&'a Value> {
        let o = body.as_object()?;
        if o.len() != 1 {
            return None;
        }
        o.get(&format!("{}:{name}", self.module))
            .or_else(|| o.get(name))
    }

    /// The answer to a GET of `steps` in `root` (the whole tree when `steps` is
    /// empty): the node under its qualified name, a list entry as a one-entry array.
    pub fn get(&self, root: &Value, steps: &[Step]) -> Answer {
        let Some(last) = steps.last() else {
            return Answer::json(
                200,
                &json!({ format!("{0}:{0}", self.module): root.clone() }),
            );
        };
        let Some(v) = self.find(root, steps) else {
            return missing(&self.steps_text(steps));
        };
        let v = if last.key.is_some() {
            Value::Array(vec![v.clone()])
        } else {
            v.clone()
        };
        Answer::json(200, &json!({ format!("{}:{}", self.module, last.name): v }))
    }

    /// Applies `method` (PUT §4.5, PATCH §4.6.1, POST §4.4.1, DELETE §4.7) at `steps`
    /// to the configuration tree `tree` with the request `body` (`Null` for DELETE);
    /// `path` is the request's data path for error bodies. `true` when a resource was
    /// created. A whole-tree body drops its `state` member.
    pub fn edit(
        &self,
        tree: &mut Value,
        method: &str,
        steps: &[Step],
        body: &Value,
        path: &str,
    ) -> Result<bool, Answer> {
        let Some((last, parents)) = steps.split_last() else {
            // The whole configuration.
            let Some(v) = self.body_member(body, self.module) else {
                return Err(malformed(&format!(
                    "expected {{\"{0}:{0}\": {{…}}}}",
                    self.module
                )));
            };
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("state");
            }
            match method {
                "PUT" => *tree = v,
                "PATCH" => self.merge(tree, &v, self.module),
                _ => return Err(unsupported(405, "PUT or PATCH the whole configuration")),
            }
            return Ok(false);
        };
        let Some(parent) = self.parent_mut(tree, parents) else {
            return Err(missing(path));
        };
        let exists = match &last.key {
            Some(k) => parent
                .get(&last.name)
                .and_then(|l| self.entry(l, &last.name, k))
                .is_some(),
            None => parent.contains_key(&last.name),
        };
        if method == "DELETE" {
            if !exists {
                return Err(missing(path));
            }
            match &last.key {
                Some(k) => {
                    if let Some(Value::Array(a)) = parent.get_mut(&last.name) {
                        a.retain(|e| self.key_of(&last.name, e).as_deref() != Some(k.as_str()));
                    }
                }
                None => {
                    parent.remove(&last.name);
                }
            }
            return Ok(false);
        }
        let Some(v) = self.body_member(body, &last.name) else {
            return Err(malformed(&format!(
                "expected {{\"{}:{}\": …}}",
                self.module, last.name
            )));
        };
        // A list entry's body is a one-entry array whose key matches the path.
        let v = match &last.key {
            Some(k) => {
                let e = match v {
                    Value::Array(a) if a.len() == 1 => &a[0],
                    _ => return Err(malformed("a list entry's body is a one-entry array")),
                };
                if self.key_of(&last.name, e).as_deref() != Some(k.as_str()) {
                    return Err(invalid(path, "the key in the body differs from the path"));
                }
                e.clone()
            }
            None => v.clone(),
        };
        match (method, &last.key) {
            ("POST", _) if exists => Err(error(
                409,
                "application",
                "data-exists",
                path,
                "already exists",
            )),
            ("PATCH", _) if !exists => Err(missing(path)),
            (_, Some(k)) => {
                let list = parent
                    .entry(last.name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Some(a) = list.as_array_mut() else {
                    return Err(invalid(path, "not a list"));
                };
                match a
                    .iter_mut()
                    .find(|e| self.key_of(&last.name, e).as_deref() == Some(k.as_str()))
                {
                    Some(x) if method == "PATCH" => self.merge(x, &v, &last.name),
                    Some(x) => *x = v,
                    None => a.push(v),
                }
                Ok(!exists)
            }
            (_, None) => {
                match parent.get_mut(&last.name) {
                    Some(x) if method == "PATCH" => self.merge(x, &v, &last.name),
                    Some(x) => *x = v,
                    None => {
                        parent.insert(last.name.clone(), v);
                    }
                }
                Ok(!exists)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Schema = Schema {
        module: "m",
        keys: &[("item", "name")],
    };

    #[test]
    fn paths_keys_and_percent_decoding() {
        let s = S.parse_path("m:m/a/m:item=x%2Fy/").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].key.as_deref(), Some("x/y"));
        assert_eq!(S.steps_text(&s), "/m:m/a/item=x/y");
        assert!(S.parse_path("other:m").is_none());
        assert!(S.parse_path("m:m/a=1").is_none(), "a is not a list");
        assert!(S.parse_path("m:m/item=%zz").is_none());
    }

    #[test]
    fn edit_create_merge_delete() {
        let mut t = json!({"item": [{"name": "a", "v": 1}]});
        let steps = S.parse_path("m:m/item=b").unwrap();
        let body = json!({"m:item": [{"name": "b", "v": 2}]});
        assert_eq!(S.edit(&mut t, "POST", &steps, &body, "/p"), Ok(true));
        assert_eq!(
            S.edit(&mut t, "POST", &steps, &body, "/p")
                .unwrap_err()
                .status,
            409
        );
        let patch = json!({"m:m": {"item": [{"name": "a", "w": 3}]}});
        assert_eq!(S.edit(&mut t, "PATCH", &[], &patch, "/p"), Ok(false));
        assert_eq!(t["item"][0], json!({"name": "a", "v": 1, "w": 3}));
        assert_eq!(
            S.edit(&mut t, "DELETE", &steps, &Value::Null, "/p"),
            Ok(false)
        );
        assert_eq!(t["item"].as_array().unwrap().len(), 1);
        let e = S
            .edit(&mut t, "DELETE", &steps, &Value::Null, "/p")
            .unwrap_err();
        assert_eq!(e.status, 404);
        assert!(e.body.contains("\"error-tag\":\"invalid-value\""));
        let wrong = json!({"m:item": [{"name": "c"}]});
        assert_eq!(
            S.edit(&mut t, "PUT", &steps, &wrong, "/p")
                .unwrap_err()
                .status,
            400
        );
    }
}
