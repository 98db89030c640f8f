#!/usr/bin/env python3
"""Validate VNF packages offline with independent validators.

* SOL004 CSAR (``*.csar``): ``tosca-parser`` (PyPI) parses the CSAR with the ETSI
  SOL001 type files the package ships, including the nested deployment-flavour
  templates; the SOL004 structure is checked here (TOSCA.meta is the first zip entry
  and starts with the TOSCA-Meta-File-Version, CSAR-Version, Created-By,
  Entry-Definitions keys; ETSI-Entry-Manifest/Change-Log exist; every file is in the
  manifest with a SHA-256 digest that matches).
* OSM / SOL006 packages (a package folder, a ``.tar.gz``, or a folder holding them):
  ``checksums.txt`` MD5s are checked, each VNFD/NSD YAML is converted to RFC 7951 JSON
  using the YANG schema (read with ``pyang``: module-qualified names, prefixed
  identities, 64-bit and decimal64 numbers as strings) and validated by ``yanglint``
  (Debian ``libyang2-tools``) twice: against OSM IM release 9 (SOL006 v2.6.1 plus OSM
  augments) and against strict ETSI SOL006 v2.6.1 with the OSM augment nodes removed.
  An NSD is validated with the VNFDs of the sibling VNF packages inlined, so its
  ``vnfd-id`` leafrefs resolve.

Usage: validate.py [--reference DIR] PATH...
Exit status: 0 all valid, 1 some package invalid, 2 a validator is missing.
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

REF_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "reference")


class Missing(Exception):
    pass


def need_modules():
    try:
        import yaml  # noqa: F401
        import pyang  # noqa: F401
        import toscaparser  # noqa: F401
    except ImportError as e:
        raise Missing(f"python module missing ({e}); run: pip install tosca-parser pyang")
    if shutil.which("yanglint") is None:
        raise Missing("yanglint not found; run: apt-get install -y libyang2-tools")


# ---------------------------------------------------------------- SOL004 / SOL001

META_KEYS = ["TOSCA-Meta-File-Version", "CSAR-Version", "Created-By", "Entry-Definitions"]


def check_csar(path):
    errors = []
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        files = [n for n in names if not n.endswith("/")]
        if not files or files[0] != "TOSCA-Metadata/TOSCA.meta":
            errors.append(f"first file entry is {files[:1]}, SOL004 wants TOSCA-Metadata/TOSCA.meta")
        if "TOSCA-Metadata/TOSCA.meta" not in names:
            return errors + ["TOSCA-Metadata/TOSCA.meta missing"]
        meta = z.read("TOSCA-Metadata/TOSCA.meta").decode("utf-8", "replace")
        pairs = [ln.split(":", 1) for ln in meta.splitlines() if ":" in ln]
        keys = [k.strip() for k, _ in pairs]
        vals = {k.strip(): v.strip() for k, v in pairs}
        if keys[:4] != META_KEYS:
            errors.append(f"TOSCA.meta starts with {keys[:4]}, expected {META_KEYS}")
        for k in ("Entry-Definitions", "ETSI-Entry-Manifest", "ETSI-Entry-Change-Log"):
            if k not in vals:
                errors.append(f"TOSCA.meta lacks {k}")
            elif vals[k] not in names:
                errors.append(f"TOSCA.meta {k}: {vals[k]} not in the archive")
        mf_name = vals.get("ETSI-Entry-Manifest")
        if mf_name in names:
            mf = z.read(mf_name).decode("utf-8", "replace")
            for k in ("vnf_provider_id", "vnf_product_name", "vnf_release_date_time", "vnf_package_version"):
                if not any(ln.startswith(k + ":") for ln in mf.splitlines()):
                    errors.append(f"manifest metadata lacks {k}")
            listed = set()
            src = None
            body, sep, sig = mf.partition("-----BEGIN CMS-----")
            if sep:
                errors += verify_cms(z, body, sep + sig, vals.get("ETSI-Entry-Certificate"), names)
            for ln in body.splitlines():
                if ln.startswith("Source:"):
                    src = ln.split(":", 1)[1].strip()
                elif ln.startswith("Algorithm:"):
                    if ln.split(":", 1)[1].strip() != "SHA-256":
                        errors.append(f"{src}: algorithm is not SHA-256")
                elif ln.startswith("Hash:"):
                    want = ln.split(":", 1)[1].strip()
                    if src not in names:
                        errors.append(f"manifest lists {src}, not in the archive")
                    else:
                        got = hashlib.sha256(z.read(src)).hexdigest()
                        if got != want:
                            errors.append(f"digest mismatch for {src}")
                    listed.add(src)
                    src = None
            for n in files:
                if n != mf_name and n not in listed:
                    errors.append(f"{n} not listed in the manifest")
    # tosca-parser over the whole CSAR (it unpacks it and follows the imports).
    from toscaparser.tosca_template import ToscaTemplate
    try:
        t = ToscaTemplate(path)
        nested = t.nested_tosca_templates_with_topology or []
        if not nested:
            errors.append("tosca-parser found no deployment-flavour template (substitution_mappings)")
    except Missing:
        raise
    except Exception as e:  # tosca-parser raises ValidationError, sometimes TypeError
        errors.append(f"tosca-parser: {type(e).__name__}: " + " ".join(str(e).split()))
    return errors


def verify_cms(z, body, pem, cert_name, names):
    """SOL004 5.3 option 1: detached CMS signature of the manifest body, checked with
    the openssl CLI against the package's certificate as trust anchor."""
    if not cert_name or cert_name not in names:
        return ["manifest is signed but TOSCA.meta names no ETSI-Entry-Certificate file in the archive"]
    if shutil.which("openssl") is None:
        raise Missing("openssl not found (needed to verify the manifest signature)")
    with tempfile.TemporaryDirectory() as d:
        for name, data in (("body", body.encode()), ("sig.pem", pem.encode()), ("cert.pem", z.read(cert_name))):
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(data)
        r = subprocess.run(
            ["openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", os.path.join(d, "sig.pem"),
             "-content", os.path.join(d, "body"), "-CAfile", os.path.join(d, "cert.pem"),
             "-certfile", os.path.join(d, "cert.pem"), "-partial_chain", "-purpose", "any",
             "-out", os.devnull],
            capture_output=True, text=True)
        if r.returncode != 0:
            return ["manifest CMS signature does not verify: " + " ".join(r.stderr.split())[:300]]
    return []


# ---------------------------------------------------------------- SOL006 / yanglint


def module_files(dirs):
    """Main modules (not submodules) in the given folders."""
    out = []
    for d in dirs:
        for f in sorted(os.listdir(d)):
            if not f.endswith(".yang"):
                continue
            p = os.path.join(d, f)
            with open(p, encoding="utf-8") as fh:
                head = fh.read(4000)
            body = re.sub(r"/\*.*?\*/", "", head, flags=re.S)
            body = "\n".join(ln for ln in body.splitlines() if not ln.strip().startswith("//"))
            if body.lstrip().startswith("module"):
                out.append(p)
    return out


class Schema:
    """A YANG module set: pyang for the schema walk, yanglint for validation."""

    def __init__(self, name, dirs, modules, extra_search=()):
        from pyang import context, repository

        self.name = name
        self.dirs = list(dirs)
        self.search = list(dirs) + list(extra_search)
        self.modules = modules
        repo = repository.FileRepository(":".join(self.search), use_env=False)
        self.ctx = context.Context(repo)
        self.mods = []
        for p in modules:
            with open(p, encoding="utf-8") as fh:
                m = self.ctx.add_module(p, fh.read())
            if m is not None:
                self.mods.append(m)
        self.ctx.validate()
        self.identities = {}
        for m in self.ctx.modules.values():
            if m.keyword != "module":
                continue
            for ident in getattr(m, "i_identities", {}):
                self.identities.setdefault(ident, m.arg)

    def top(self, name):
        for m in self.mods:
            for c in getattr(m, "i_children", []):
                if c.arg == name:
                    return c
        return None

    def yanglint(self, json_path):
        cmd = ["yanglint"]
        for d in self.search:
            cmd += ["-p", d]
        cmd += self.modules + [json_path]
        r = subprocess.run(cmd, capture_output=True, text=True)
        errs = [ln for ln in (r.stderr + r.stdout).splitlines() if "warn" not in ln.lower() and ln.strip()]
        return r.returncode, errs


def data_children(s):
    for c in getattr(s, "i_children", []):
        if c.keyword in ("choice", "case"):
            yield from data_children(c)
        elif c.keyword in ("container", "list", "leaf", "leaf-list", "anydata", "anyxml"):
            yield c


def base_type(node):
    t = node.search_one("type")
    seen = 0
    while t is not None and seen < 20:
        seen += 1
        if t.arg == "leafref":
            target = getattr(getattr(t, "i_type_spec", None), "i_target_node", None)
            if target is None:
                return "string"
            t = target.search_one("type")
            continue
        td = getattr(t, "i_typedef", None)
        if td is None:
            return t.arg.split(":")[-1]
        t = td.search_one("type")
    return "string"


def convert_value(schema, node, v, path, dropped):
    bt = base_type(node)
    if bt == "identityref":
        s = str(v)
        if ":" in s:
            return s
        mod = schema.identities.get(s)
        return f"{mod}:{s}" if mod else s
    if bt in ("int64", "uint64", "decimal64"):
        return str(v)
    if bt in ("int8", "int16", "int32", "uint8", "uint16", "uint32"):
        return v
    if bt == "boolean":
        return v
    if bt == "empty":
        return [None]
    if bt == "string" and not isinstance(v, (dict, list)):
        return str(v) if v is not None else v
    return v


def convert_node(schema, node, v, path, strip, dropped):
    kw = node.keyword
    if kw == "container":
        return convert_children(schema, node, v, path, strip, dropped)
    if kw == "list":
        return [convert_children(schema, node, e, f"{path}[{i}]", strip, dropped) for i, e in enumerate(v or [])]
    if kw == "leaf-list":
        items = v if isinstance(v, list) else [v]
        return [convert_value(schema, node, e, path, dropped) for e in items]
    if kw == "leaf":
        return convert_value(schema, node, v, path, dropped)
    return v


def convert_children(schema, parent, d, path, strip, dropped):
    if not isinstance(d, dict):
        return d
    kids = {c.arg: c for c in data_children(parent)}
    pmod = parent.i_module.i_modulename
    out = {}
    for k, v in d.items():
        c = kids.get(k)
        if c is None:
            if strip:
                dropped.append(f"{path}/{k}")
                continue
            out[k] = v  # yanglint reports it
            continue
        cmod = c.i_module.i_modulename
        name = k if cmod == pmod else f"{cmod}:{k}"
        out[name] = convert_node(schema, c, v, f"{path}/{k}", strip, dropped)
    return out


def to_rfc7951(schema, doc, strip=False, extra_vnfds=()):
    """Convert an OSM YAML document (``vnfd:`` or ``nsd:``) to RFC 7951 JSON data."""
    dropped = []
    out = {}
    for k, v in (doc or {}).items():
        node = schema.top(k)
        if node is None:
            out[k] = v
            continue
        conv = convert_node(schema, node, v, "/" + k, strip, dropped)
        if k == "nsd" and extra_vnfds:
            lst = {c.arg: c for c in data_children(node)}.get("vnfd")
            if lst is not None:
                conv.setdefault("vnfd", [])
                for vd in extra_vnfds:
                    conv["vnfd"].append(convert_children(schema, lst, vd, "/nsd/vnfd", True, []))
        out[f"{node.i_module.i_modulename}:{k}"] = conv
    return out, dropped


_SCHEMAS = {}


def schemas(ref):
    if ref not in _SCHEMAS:
        _SCHEMAS[ref] = _schemas(ref)
    return _SCHEMAS[ref]


def _schemas(ref):
    s6 = os.path.join(ref, "sol006")
    osm = os.path.join(s6, "osm-im-r9-libyang")
    etsi = os.path.join(s6, "etsi-sol006-v2.6.1-libyang")
    for d in (osm, etsi):
        if not os.path.isdir(d):
            raise Missing(f"YANG modules not found at {d} (set VNF_SHARED_REFERENCE)")
    aug = os.path.join(osm, "augments")
    # etsi-nfv-descriptors first: loaded later (through an import) it is not
    # "implemented" and its identities cannot be used.
    first = os.path.join(aug, "etsi-nfv-descriptors.yang")
    osm_mods = [first] + [p for p in module_files([aug]) if p != first and not p.endswith("etsi-nfv-pnfd.yang")]
    etsi_mods = [os.path.join(etsi, f) for f in ("etsi-nfv-descriptors.yang", "etsi-nfv-vnfd.yang", "etsi-nfv-nsd.yang")]
    return [
        Schema("OSM IM r9 (SOL006 v2.6.1 + OSM augments)", [osm, aug], osm_mods),
        Schema("ETSI SOL006 v2.6.1 (strict)", [etsi], etsi_mods, extra_search=[osm]),
    ]


def check_checksums(folder):
    errors = []
    p = os.path.join(folder, "checksums.txt")
    if not os.path.isfile(p):
        return [f"{folder}: checksums.txt missing"]
    listed = set()
    with open(p, encoding="utf-8") as fh:
        for ln in fh:
            if not ln.strip():
                continue
            md5, _, rel = ln.rstrip("\n").partition("\t")
            listed.add(rel)
            f = os.path.join(folder, rel)
            if not os.path.isfile(f):
                errors.append(f"checksums.txt lists {rel}, missing")
                continue
            with open(f, "rb") as fh2:
                if hashlib.md5(fh2.read()).hexdigest() != md5:
                    errors.append(f"checksum mismatch for {rel}")
    for root, _, fs in os.walk(folder):
        for f in fs:
            rel = os.path.relpath(os.path.join(root, f), folder)
            if rel != "checksums.txt" and rel not in listed:
                errors.append(f"{rel} not in checksums.txt")
    return errors


def find_descriptors(folder, suffix):
    out = []
    for f in sorted(os.listdir(folder)):
        if f.endswith(suffix):
            out.append(os.path.join(folder, f))
    return out


def load_yaml(p):
    import yaml

    with open(p, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def check_osm_packages(folders, ref, report):
    """folders: package folders (each holding one *_vnfd.yaml or *_nsd.yaml)."""
    sch = schemas(ref)
    # VNFDs by the folder holding their package: an NSD sees those of its siblings.
    vnfds = {}
    for f in folders:
        for p in find_descriptors(f, "_vnfd.yaml"):
            doc = load_yaml(p)
            if isinstance(doc, dict) and isinstance(doc.get("vnfd"), dict):
                vnfds.setdefault(os.path.dirname(os.path.abspath(f)), []).append(doc["vnfd"])
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for f in folders:
            errs = check_checksums(f)
            for e in errs:
                report.append(f"FAIL {f}: {e}")
            failed |= bool(errs)
            descs = find_descriptors(f, "_vnfd.yaml") + find_descriptors(f, "_nsd.yaml")
            if not descs:
                report.append(f"FAIL {f}: no *_vnfd.yaml or *_nsd.yaml")
                failed = True
            for p in descs:
                doc = load_yaml(p)
                is_ns = p.endswith("_nsd.yaml")
                for i, s in enumerate(sch):
                    strict = i > 0
                    data, dropped = to_rfc7951(s, doc, strip=strict, extra_vnfds=vnfds.get(os.path.dirname(os.path.abspath(f)), []) if is_ns else ())
                    jp = os.path.join(tmp, f"{os.path.basename(p)}.{i}.json")
                    with open(jp, "w", encoding="utf-8") as fh:
                        json.dump(data, fh, indent=1)
                    rc, errs = s.yanglint(jp)
                    if rc != 0 or any(e.lower().startswith(("libyang err", "yanglint[e]")) for e in errs):
                        failed = True
                        report.append(f"FAIL {p} [{s.name}]: yanglint: " + " | ".join(errs[:8]))
                    else:
                        note = f" (OSM augments not in ETSI: {len(dropped)})" if strict and dropped else ""
                        report.append(f"OK   {p} [{s.name}]{note}")
    return failed


def osm_folders(path, tmp):
    """Package folders under path (a package folder, a .tar.gz, or a folder of them)."""
    if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz")):
        d = tempfile.mkdtemp(dir=tmp)
        with tarfile.open(path) as t:
            for m in t.getmembers():
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise ValueError(f"{path}: unsafe member {m.name}")
            t.extractall(d)
        tops = [os.path.join(d, x) for x in os.listdir(d)]
        if len(tops) != 1 or not os.path.isdir(tops[0]):
            raise ValueError(f"{path}: an OSM package tarball holds exactly one top folder")
        return tops
    found = []
    for root, dirs, _ in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if find_descriptors(root, "_vnfd.yaml") or find_descriptors(root, "_nsd.yaml"):
            found.append(root)
    return found


def csars_under(path):
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(".csar")]
    return out


def run(a, report):
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for p in a.paths:
            if not os.path.exists(p):
                report.append(f"FAIL {p}: does not exist")
                failed = True
            elif p.endswith(".csar") or (os.path.isfile(p) and zipfile.is_zipfile(p)):
                errs = check_csar(p)
                failed |= bool(errs)
                report += [f"FAIL {p}: {e}" for e in errs] or [f"OK   {p} [SOL004 layout, manifest, tosca-parser]"]
            else:
                csars = csars_under(p) if os.path.isdir(p) else []
                for c in csars:
                    errs = check_csar(c)
                    failed |= bool(errs)
                    report += [f"FAIL {c}: {e}" for e in errs] or [f"OK   {c} [SOL004 layout, manifest, tosca-parser]"]
                try:
                    folders = osm_folders(p, tmp)
                    if not folders and csars:
                        continue
                    if not folders:
                        raise ValueError("no CSAR or OSM package found")
                    failed |= check_osm_packages(folders, a.reference, report)
                except (ValueError, OSError, tarfile.TarError) as e:
                    report.append(f"FAIL {p}: {e}")
                    failed = True
    return failed


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", default=os.environ.get("VNF_SHARED_REFERENCE", REF_DEFAULT))
    ap.add_argument("paths", nargs="+")
    a = ap.parse_args(argv)
    try:
        need_modules()
    except Missing as e:
        print(f"MISSING {e}")
        return 2
    report = []
    try:
        failed = run(a, report)
    except Missing as e:
        print("\n".join(report + [f"MISSING {e}"]))
        return 2
    print("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
