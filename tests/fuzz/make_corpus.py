#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets into tests/fuzz/corpus/<target>/.

Usage: make_corpus.py [LAYER_INDEX_SEEDS_TOOL]

Seeds are small valid inputs of each format and a few malformed ones: references, registry
challenges, manifests and indexes, tar archives of every header flavour (Python's tarfile,
plus the archives of Go's archive/tar testdata when Debian's golang-1.19-src is installed),
gzip and raw layer blobs, eStargz and zstd:chunked blobs written here by the layouts their
writers use (estargz.Writer, containers/storage), their TOCs, and serialized LayerIndexes
(made by the fuzz_layer_index_seeds tool of a build, when its path is given). Files already in
a corpus directory (new coverage and crash inputs kept by scripts/fuzz) are left alone; seeds
are named seed-*. Deterministic: the same files on every run.
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
GO_TESTDATA = "/usr/share/go-1.19/src/archive/tar/testdata"
# Go's archives that are small and cover a header flavour of their own.
GO_ARCHIVES = [
    "gnu.tar", "gnu-long-nul.tar", "gnu-multi-hdrs.tar", "gnu-incremental.tar",
    "gnu-nil-sparse-data.tar", "gnu-sparse-big.tar", "gnu-utf8.tar", "pax.tar",
    "pax-global-records.tar", "pax-multi-hdrs.tar", "pax-nil-sparse-data.tar",
    "pax-pos-size-file.tar", "pax-records.tar", "pax-bad-hdr-file.tar", "pax-nul-path.tar",
    "pax-nul-xattrs.tar", "pax-path-hdr.tar", "star.tar", "v7.tar", "ustar.tar",
    "ustar-file-devs.tar", "hardlink.tar", "trailing-slash.tar", "xattrs.tar", "neg-size.tar",
    "issue10968.tar", "issue11169.tar", "issue12435.tar", "invalid-go17.tar", "nil-uid.tar",
]
DIGEST = "sha256:" + "a" * 64


def random_bytes(n, seed):
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(n))


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- tar ---------------------------------------------------------------------------------

def member(name, type_=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.size = len(data) if type_ == tarfile.REGTYPE else 0
    ti.mtime = 1700000000
    ti.mode = kw.pop("mode", 0o755 if type_ == tarfile.DIRTYPE else 0o644)
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, data


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, pax_headers=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, pax_headers=pax_headers or {}) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def basic_members(long_names=False):
    long = "d/" + "n" * 120 if long_names else "d/f2"
    return [
        member("d", tarfile.DIRTYPE),
        member("d/f", data=b"hello\n"),
        member(long, data=random_bytes(700, 7)),
        member("d/l", tarfile.SYMTYPE, linkname="f" if not long_names else "x" * 150),
        member("d/h", tarfile.LNKTYPE, linkname="d/f"),
        member("d/c", tarfile.CHRTYPE, devmajor=1, devminor=3),
        member("d/p", tarfile.FIFOTYPE),
        member("d/.wh.gone", data=b""),
        member("e/.wh..wh..opq", data=b""),
        member("./e/../e/x", data=b"x" * 3),
    ]


def tar_seeds():
    seeds = {
        "ustar.tar": tar_bytes(basic_members(), tarfile.USTAR_FORMAT),
        "gnu-long.tar": tar_bytes(basic_members(True), tarfile.GNU_FORMAT),
        "pax-long.tar": tar_bytes(basic_members(True), tarfile.PAX_FORMAT),
    }
    ti, data = member("x", data=b"attrs")
    ti.pax_headers = {"SCHILY.xattr.user.a": "1", "LIBARCHIVE.xattr.user.b": "Yg==",
                      "mtime": "1700000000.123456789", "uid": "70000", "gid": "70001"}
    seeds["pax-xattrs.tar"] = tar_bytes([member("d", tarfile.DIRTYPE), (ti, data)])
    seeds["pax-global.tar"] = tar_bytes(basic_members()[:3], pax_headers={"uid": "5"})
    plain = seeds["ustar.tar"]
    seeds["truncated.tar"] = plain[:1000]
    seeds["no-end-blocks.tar"] = plain[:len(plain) - 1024].rstrip(b"\0")[:512 * 3]
    bad = bytearray(plain)
    bad[148:156] = b"0000000\0"  # checksum
    seeds["bad-checksum.tar"] = bytes(bad)
    bad = bytearray(plain[:2048])
    bad[512 + 124:512 + 136] = b"\x80" + b"\xff" * 11  # base-256 size, huge
    seeds["base256-size.tar"] = bytes(bad)
    return seeds


# --- eStargz -----------------------------------------------------------------------------

def tar_header(name, size, type_=tarfile.REGTYPE, link=""):
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.type = type_
    ti.linkname = link
    ti.mtime = 1700000000
    return ti.tobuf(format=tarfile.GNU_FORMAT)


def pad(n):
    return b"\0" * ((512 - n % 512) % 512)


def gz_member(data):
    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def estargz_footer(toc_off, legacy):
    hexoff = b"%016x" % toc_off
    f = b"\x1f\x8b\x08\x04\0\0\0\0\0\xff"
    if legacy:
        f += b"\x16\x00" + hexoff + b"STARGZ"
    else:
        f += b"\x1a\x00" + b"SG\x16\x00" + hexoff + b"STARGZ"
    return f + b"\x01\x00\x00\xff\xff" + b"\0" * 8


def estargz(files, legacy=False, chunk=None):
    """files: (name, type, content, link). One gzip member per chunk, as estargz.Writer."""
    blob = b""
    pending = b""
    entries = []
    for name, typ, content, link in files:
        e = {"name": name, "type": typ, "mode": 0o755 if typ == "dir" else 0o644,
             "uid": 0, "gid": 0, "modtime": "2023-01-02T03:04:05Z"}
        if link:
            e["linkName"] = link
        ttype = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                 "hardlink": tarfile.LNKTYPE}.get(typ, tarfile.REGTYPE)
        pending += tar_header(name, len(content), ttype, link)
        if not content:
            entries.append(e)
            continue
        e["size"] = len(content)
        e["digest"] = sha256(content)
        step = chunk or len(content)
        for off in range(0, len(content), step):
            blob += gz_member(pending)
            pending = b""
            piece = content[off:off + step]
            c = dict(e) if off == 0 else {"name": name, "type": "chunk", "chunkOffset": off}
            c["offset"] = len(blob)
            c["chunkSize"] = len(piece)
            c["chunkDigest"] = sha256(piece)
            entries.append(c)
            blob += gz_member(piece)
        pending += pad(len(content))
    if pending:
        blob += gz_member(pending)
    toc = json.dumps({"version": 1, "entries": entries}).encode()
    toc_off = len(blob)
    blob += gz_member(tar_header("stargz.index.json", len(toc)) + toc + pad(len(toc)) +
                      b"\0" * 1024)
    return blob + estargz_footer(toc_off, legacy), toc


FILES = [
    ("d/", "dir", b"", ""),
    ("d/a", "reg", b"alpha\n" * 40, ""),
    ("d/big", "reg", random_bytes(3000, 3), ""),
    ("d/s", "symlink", b"", "a"),
    ("d/h", "hardlink", b"", "d/a"),
    ("d/.wh.old", "reg", b"", ""),
    (".prefetch.landmark", "reg", b"\0", ""),
]


def estargz_seeds():
    blob, toc = estargz(FILES, chunk=1024)
    legacy, _ = estargz(FILES[:3], legacy=True)
    seeds = {"blob.estargz": blob, "legacy.stargz": legacy, "toc.json": toc}
    doc = json.loads(toc)
    bad = json.loads(toc)
    bad["entries"][2]["offset"] = 1 << 62
    seeds["toc-bad-offset.json"] = json.dumps(bad)
    bad = json.loads(toc)
    bad["entries"][2]["chunkSize"] = -1
    seeds["toc-negative.json"] = json.dumps(bad)
    bad = json.loads(toc)
    bad["entries"].append({"name": "../../etc/passwd", "type": "reg", "size": 1, "offset": 10})
    seeds["toc-escape.json"] = json.dumps(bad)
    seeds["toc-empty.json"] = '{"version":1,"entries":[]}'
    seeds["toc-not-object.json"] = "[1,2,3]"
    seeds["blob-truncated.estargz"] = blob[:len(blob) // 2] + blob[-51:]
    del doc
    return seeds


# --- zstd:chunked ------------------------------------------------------------------------

def zstd(data, sized=False):
    """One zstd frame; `sized`: with the content size in its header (read from a pipe, zstd
    leaves it out unless told)."""
    size = ["--stream-size=%d" % len(data)] if sized else []
    return subprocess.run(["zstd", "-q", "-c", "-3"] + size, input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def skippable(payload):
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


def zstd_chunked(files, footer40=False):
    """The containers/storage layout: each chunk in its own frame, endOffset on the file."""
    blob = b""
    cur = b""
    entries = []
    for name, typ, content, link in files:
        e = {"name": name, "type": typ, "mode": 0o644, "uid": 0, "gid": 0,
             "modtime": "2023-01-02T03:04:05.5+02:00"}
        if link:
            e["linkName"] = link
        cur += tar_header(name, len(content))
        if not content:
            entries.append(e)
            continue
        if cur:
            blob += zstd(cur)
            cur = b""
        e["size"] = len(content)
        e["digest"] = sha256(content)
        half = len(content) // 2
        pieces = [content[:half], content[half:]] if half else [content]
        out = []
        written = 0
        for i, p in enumerate(pieces):
            c = dict(e) if i == 0 else {"name": name, "type": "chunk", "chunkOffset": written}
            c["offset"] = len(blob)
            c["chunkSize"] = len(p)
            c["chunkDigest"] = sha256(p)
            if p and p == b"\0" * len(p):
                c["chunkType"] = "zeros"
            blob += zstd(p)
            written += len(p)
            out.append(c)
        out[0]["endOffset"] = len(blob)
        entries += out
        cur += pad(len(content))
    cur += b"\0" * 1024
    blob += zstd(cur)
    toc = json.dumps({"version": 1, "entries": entries}).encode()
    ctoc = zstd(toc)
    toc_off = len(blob) + 8
    blob += skippable(ctoc)
    tarsplit = zstd(b'{"tar-split":true}')
    ts_off = len(blob) + 8
    blob += skippable(tarsplit)
    footer = struct.pack("<QQQQ", toc_off, len(ctoc), len(toc), 1)
    footer += b"GnUlInUx" if footer40 else struct.pack("<QQQ", ts_off, len(tarsplit), 18) + b"GNUlInUx"
    blob += skippable(footer)
    return blob, toc, "%d:%d:%d:1" % (toc_off, len(ctoc), len(toc))


def zstd_seeds():
    files = FILES[:5] + [("zeros", "reg", b"\0" * 4096, "")]
    blob, toc, position = zstd_chunked(files)
    blob40, _, _ = zstd_chunked(files[:3], footer40=True)
    seeds = {"blob.zst": blob, "blob-footer40.zst": blob40, "toc.json": toc,
             "position.txt": position, "position-type2.txt": "10:20:30:2",
             "position-bad.txt": "1:2:x:1"}
    bad = json.loads(toc)
    for e in bad["entries"]:
        if "endOffset" in e:
            e["endOffset"] = 1
    seeds["toc-bad-end.json"] = json.dumps(bad)
    return seeds


# --- registry ----------------------------------------------------------------------------

def registry_seeds():
    refs = [
        "alpine", "library/alpine:3.19", "ghcr.io/o/r:v1", "localhost:5000/app",
        "localhost/app@" + DIGEST, "docker.io/library/x:tag@" + DIGEST, "index.docker.io/foo/bar",
        "[::1]:5000/a/b:c", "127.0.0.1:41234/x/y:latest", "UPPER/x", "a:b:c", "",
        "x@sha512:" + "b" * 128, "x@sha256:abc", "a//b", "example.com:443/p/q/r", "-a",
        "a" * 256, "x:" + "t" * 129, "Example.com/x", "x@", ":tag",
    ]
    for i, r in enumerate(refs):
        write("reference_fuzz", "%02d" % i, r)
    headers = [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"',
        'Basic realm="Registry Realm"',
        'BEARER Realm="a\\"b,c=d", error="invalid_token", Basic realm=x',
        "Bearer", "", ",,, ,", 'Bearer realm="unterminated', "Bearer =x, realm", "dXNlcjpwYXNz",
        "dXNlcjpwYXNz\r\n", "dXNlcjpwYXN", "!!!!",
    ]
    for i, h in enumerate(headers):
        write("www_authenticate_fuzz", "%02d" % i, h)

    layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST,
             "size": 123, "annotations": {"containerd.io/snapshot/stargz/toc.digest": DIGEST}}
    oci = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                      "digest": DIGEST, "size": 7}, "layers": [layer, layer]}
    docker = dict(oci, mediaType="application/vnd.docker.distribution.manifest.v2+json")
    docker["config"] = dict(oci["config"],
                            mediaType="application/vnd.docker.container.image.v1+json")
    plat = lambda a, v=None: dict({"os": "linux", "architecture": a}, **({"variant": v} if v else {}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [
                 {"mediaType": oci["mediaType"], "digest": DIGEST, "size": 9,
                  "platform": plat("amd64")},
                 {"mediaType": oci["mediaType"], "digest": DIGEST, "size": 9,
                  "platform": plat("arm64", "v8")},
                 {"mediaType": oci["mediaType"], "digest": DIGEST, "size": 9,
                  "platform": {"os": "unknown", "architecture": "unknown"},
                  "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
             ]}
    mlist = dict(index, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")
    schema1 = {"schemaVersion": 1, "name": "x", "tag": "t", "fsLayers": []}
    manifests = {"oci.json": oci, "docker.json": docker, "index.json": index,
                 "list.json": mlist, "schema1.json": schema1}
    bad = json.loads(json.dumps(oci))
    bad["layers"][0]["digest"] = "sha256:zz"
    manifests["bad-digest.json"] = bad
    bad = json.loads(json.dumps(oci))
    bad["layers"][0]["size"] = -5
    manifests["negative-size.json"] = bad
    bad = json.loads(json.dumps(oci))
    bad["layers"] = {"a": 1}
    manifests["layers-object.json"] = bad
    for name, doc in manifests.items():
        write("manifest_fuzz", name, json.dumps(doc))
    write("manifest_fuzz", "not-json.json", "{\"schemaVersion\": 2,")
    write("manifest_fuzz", "shape-only.json", json.dumps({"manifests": []}))


# --- shared indexes (fs/layer/shared_index.h) ---------------------------------------------

SHARED_SIZE = 1 << 40  # the blob size shared_index_fuzz.cc expects; every unit fits in it


def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7f) | 0x80])
        v >>= 7
    return out + bytes([v])


def lstr(b):
    return varint(len(b)) + b


def read_varint(data, pos):
    v, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        v |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return v, pos


def shared_index_seeds(lix_dir):
    """Shared indexes of the gzip and tar bodies, rewritten to name the layer the fuzz target
    decodes them for (DIGEST, SHARED_SIZE, diff_id sha256:bbb...)."""
    diff_id = ("sha256:" + "b" * 64).encode()
    for name in ("gzip.tar.gz", "raw.tar", "multi-unit.tar.gz"):
        with open(os.path.join(lix_dir, "seed-" + name + ".body"), "rb") as f:
            body = f.read()
        with open(os.path.join(lix_dir, "seed-" + name + ".lix"), "rb") as f:
            version = f.read()[8]  # the body's layout: version 2 has no diff_id
        n, pos = read_varint(body, 0)
        pos += n  # blob digest
        n, pos = read_varint(body, pos)
        fmt = body[pos:pos + n]
        pos += n
        _, pos = read_varint(body, pos)  # blob size
        prefetch_end, pos = read_varint(body, pos)
        if version == 3:
            n, pos = read_varint(body, pos)
            pos += n  # diff_id
        new_body = (lstr(DIGEST.encode()) + lstr(fmt) + varint(SHARED_SIZE) +
                    varint(prefetch_end) + lstr(diff_id) + body[pos:])
        payload = lstr(DIGEST.encode()) + lstr(diff_id) + new_body
        write("shared_index_fuzz", name + ".payload", payload)
        write("shared_index_fuzz", name + ".six", b"IMGFSSIX\x01" + zstd(payload, sized=True))
    write("shared_index_fuzz", "bad-version.six", b"IMGFSSIX\x02" + zstd(b"x", sized=True))
    write("shared_index_fuzz", "lying-size.six",
          b"IMGFSSIX\x01\x28\xb5\x2f\xfd\x60\xff\xff\xff\xff\xff\x00")


def main():
    registry_seeds()
    tars = tar_seeds()
    if os.path.isdir(GO_TESTDATA):
        for name in GO_ARCHIVES:
            with open(os.path.join(GO_TESTDATA, name), "rb") as f:
                tars["go-" + name] = f.read()
    for name, data in tars.items():
        write("tar_fuzz", name, data)
    blobs = {
        "raw.tar": tars["ustar.tar"],
        "gzip.tar.gz": gzip.compress(tars["pax-long.tar"], mtime=0),
        "two-members.tar.gz": gz_member(tars["ustar.tar"][:1536]) + gz_member(tars["ustar.tar"][1536:]),
        "padded.tar.gz": gzip.compress(tars["gnu-long.tar"], mtime=0) + b"\0" * 300,
        "truncated.tar.gz": gzip.compress(tars["ustar.tar"], mtime=0)[:200],
        "not-gzip.bin": b"\x1f\x8b\x08\x00garbage",
        "zstd.tar.zst": b"\x28\xb5\x2f\xfd" + b"\0" * 20,
    }
    big = tar_bytes([member("r", data=random_bytes(20000, 5)),
                     member("z", data=b"\0" * 30000)])
    blobs["multi-unit.tar.gz"] = gzip.compress(big, mtime=0)
    for name, data in blobs.items():
        write("stream_index_fuzz", name, data)
    est = estargz_seeds()
    for name, data in est.items():
        write("estargz_fuzz", name, data)
    for name, data in zstd_seeds().items():
        write("zstd_chunked_fuzz", name, data)
    tool = sys.argv[1] if len(sys.argv) > 1 else None
    if tool:
        tmp = os.path.join(CORPUS, ".lix-inputs")
        os.makedirs(tmp, exist_ok=True)
        inputs = {"raw.tar": blobs["raw.tar"], "gzip.tar.gz": blobs["gzip.tar.gz"],
                  "multi-unit.tar.gz": blobs["multi-unit.tar.gz"], "toc.json": est["toc.json"]}
        for name, data in inputs.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        out = os.path.join(CORPUS, "layer_index_fuzz")
        os.makedirs(out, exist_ok=True)
        subprocess.run([tool, out] + [os.path.join(tmp, n) for n in inputs], check=True)
        shutil.rmtree(tmp)
        for name in os.listdir(out):
            if name.endswith(".lix") and not name.startswith("seed-"):
                os.rename(os.path.join(out, name), os.path.join(out, "seed-" + name))
        with open(os.path.join(out, "seed-gzip.tar.gz.lix"), "rb") as f:
            lix = f.read()
        # The bodies alone (layer_index_fuzz.cc wraps and compresses them itself).
        for name in sorted(os.listdir(out)):
            if name.endswith(".lix"):
                with open(os.path.join(out, name), "rb") as f:
                    data = f.read()
                pos = 9  # magic, version (one byte), then the body length
                while data[pos] & 0x80:
                    pos += 1
                body = zlib.decompress(data[pos + 1:])
                write("layer_index_fuzz", name[len("seed-"):-len(".lix")] + ".body", body)
        shared_index_seeds(out)
        write("layer_index_fuzz", "truncated.lix", lix[:len(lix) // 2])
        write("layer_index_fuzz", "bad-magic.lix", b"IMGFSLIY" + lix[8:])


if __name__ == "__main__":
    main()
