"""The images scripts/bench measures, built once and kept on disk.

Two images, each pushed as plain gzip OCI (skopeo) and converted to eStargz and zstd:chunked
(ctr-remote image convert):

  bookworm  Debian 12: `debootstrap --variant=minbase` as layer 1; a layer of packages
            (python3, perl, git, curl, ...) installed with apt in a chroot plus a 48 MiB
            compressible file (the image's own binaries and libraries, concatenated);
            a layer deleting the documentation, man pages and locales (whiteouts) and
            adding a 64 MiB random file and a 900-byte config file.
  small     ~120 MiB of generated files: 1800 text files; 40 MiB of random files; the
            64 MiB random file, a 24 MiB text file and the config file.

Building bookworm fetches .debs from the Debian mirror this machine's apt uses
(/etc/apt/sources.list.d/debian.sources): a set-up step like apt-get install, done once. The
registry storage of the three formats then goes to CACHE_ROOT/<version>/ with image.json
(the files' expected digests), and every later run starts its registry on a hard-linked
copy of it. Changing what an image holds means changing its version string.

Python 3 standard library only; `bench` is the driver's Bench (run, shell, registry).
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import glob

MIB = 1 << 20
CACHE_ROOT = os.environ.get("IMGFS_BENCH_CACHE", "/var/cache/imgfs-bench")
VERSIONS = {"bookworm": "bookworm-1", "small": "small-2"}
REPO = "bench/img"

SMALL_FILE = "app/etc/settings.conf"  # the cold / warm first file
BIG_FILE = "opt/big/blob64.bin"  # 64 MiB random: stored (incompressible) data
CORPUS_FILE = "opt/bench/corpus.bin"  # compressible data
BIG_SIZE = 64 * MIB
BOOKWORM_PACKAGES = ["python3", "perl", "git", "curl", "ca-certificates", "less", "procps",
                     "xz-utils", "bzip2"]


def cache_dir(kind):
    return os.path.join(CACHE_ROOT, VERSIONS[kind])


def load_cached(kind):
    """The image.json of a cached image, or None when it has not been built."""
    try:
        with open(os.path.join(cache_dir(kind), "image.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save(bench, kind, info, storage):
    """Hard-links the registry storage into the cache (renamed into place when complete)."""
    final = cache_dir(kind)
    os.makedirs(CACHE_ROOT, exist_ok=True)
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    bench.run(["cp", "-al", storage, os.path.join(tmp, "registry")])
    with open(os.path.join(tmp, "image.json"), "w") as f:
        json.dump(info, f, indent=1)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def restore(bench, kind, storage):
    """Gives the run's registry a hard-linked copy of the cached storage. The registry only
    adds files (content-addressed, written by rename), so the links never change the cache."""
    src = os.path.join(cache_dir(kind), "registry")
    shutil.rmtree(storage, ignore_errors=True)
    try:
        bench.run(["cp", "-al", src, storage])
    except Exception:  # another file system: copy
        shutil.rmtree(storage, ignore_errors=True)
        bench.run(["cp", "-a", src, storage])


class Builder:
    """Writes an image with umoci, layer by layer, remembering the digests of what it wrote."""

    def __init__(self, bench, name):
        self.bench = bench
        self.layout = os.path.join(bench.work, f"{name}-oci")
        self.bundle = os.path.join(bench.work, f"{name}-bundle")
        self.image = f"{self.layout}:bench"
        self.rootfs = os.path.join(self.bundle, "rootfs")
        self.expected = {}
        bench.run(["umoci", "init", "--layout", self.layout])
        bench.run(["umoci", "new", "--image", self.image])
        bench.run(["umoci", "unpack", "--image", self.image, self.bundle])

    def write(self, rel, data):
        path = os.path.join(self.rootfs, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        self.expected[rel] = hashlib.sha256(data).hexdigest()

    def commit(self):
        self.bench.run(["umoci", "repack", "--refresh-bundle", "--image", self.image,
                        self.bundle], timeout=1800)

    def count_files(self):
        files = dirs = other = size = 0
        for top, dnames, fnames in os.walk(self.rootfs):
            dirs += len(dnames)
            for n in fnames:
                p = os.path.join(top, n)
                if os.path.isfile(p) and not os.path.islink(p):
                    files += 1
                    size += os.lstat(p).st_size
                else:
                    other += 1
        return {"files": files, "directories": dirs, "other_entries": other,
                "content_bytes": size}

    def push(self, registry):
        self.bench.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                        f"oci:{self.image}", f"docker://{registry}/{REPO}:gzip"], timeout=1800)
        shutil.rmtree(self.bundle)


def text_maker(rng):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(3000)]

    def text(size):
        out, length = [], 0
        while length < size:
            line = " ".join(rng.choices(words, k=rng.randint(4, 14))) + "\n"
            out.append(line)
            length += len(line)
        return "".join(out).encode()[:size]

    return text


def build_small(bench):
    """~120 MiB in 1900 files; the corpus (text) sits in layer 1."""
    rng = random.Random(20240601)
    text = text_maker(rng)
    b = Builder(bench, "small")
    for pkg in range(600):
        for name in ("README", "changelog", "copyright"):
            b.write(f"usr/share/doc/pkg{pkg:03d}/{name}", text(int(rng.lognormvariate(8.6, 0.9)) + 64))
    b.write(CORPUS_FILE, text(24 * MIB))
    b.write("etc/os-release", b'NAME="imgfs bench"\nID=imgfs-bench\n')
    b.commit()
    layer2, i = 0, 0
    while layer2 < 40 * MIB:
        size = min(int(2 ** rng.uniform(9, 22.6)), 40 * MIB - layer2)
        b.write(f"srv/data/d{i % 16:02d}/file{i:04d}.bin", rng.randbytes(size))
        layer2 += size
        i += 1
    b.commit()
    b.write(BIG_FILE, rng.randbytes(BIG_SIZE))
    b.write(SMALL_FILE, text(900))
    for n in range(20):
        b.write(f"app/lib/module{n:02d}.txt", text(rng.randint(200, 20000)))
    b.commit()
    info = {"kind": "small", "version": VERSIONS["small"], "corpus_layer": 0,
            "description": "generated: 1800 text files + a 24 MiB text file; 40 MiB of "
                           "random files; a 64 MiB random file and a config file",
            **b.count_files()}
    return b, info


def debian_mirror():
    """The first URIs: of the bookworm suite in apt's deb822 sources, else deb.debian.org."""
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            stanzas = f.read().split("\n\n")
        for s in stanzas:
            fields = dict(line.split(":", 1) for line in s.splitlines()
                          if ":" in line and not line.startswith("#"))
            if "bookworm" in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def clean_apt(rootfs):
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin",
                    "var/lib/apt/lists/*_*", "var/log/apt/*", "var/log/dpkg.log",
                    "var/cache/debconf/*-old"):
        for p in glob.glob(os.path.join(rootfs, pattern)):
            os.remove(p)


def corpus(rootfs, size):
    """size bytes of the image's own binaries and libraries, in path order: compressible
    like a layer of packages (about 3:1 with gzip)."""
    out = bytearray()
    for top in ("usr/bin", "usr/lib/x86_64-linux-gnu", "usr/lib", "usr/share/perl"):
        for dirpath, dnames, fnames in sorted(os.walk(os.path.join(rootfs, top))):
            dnames.sort()
            for n in sorted(fnames):
                p = os.path.join(dirpath, n)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                with open(p, "rb") as f:
                    out += f.read(size - len(out))
                if len(out) >= size:
                    return bytes(out)
    return bytes(out) + bytes(size - len(out))


def build_bookworm(bench):
    rng = random.Random(20261129)
    text = text_maker(rng)
    b = Builder(bench, "bookworm")
    mirror = debian_mirror()
    source = f"debootstrap --variant=minbase bookworm {mirror}"
    try:
        bench.run(["debootstrap", "--variant=minbase", "bookworm", b.rootfs, mirror],
                  timeout=1800)
        debootstrapped = True
    except Exception as e:  # no mirror: what apt has cached on this machine
        bench.notes.append(f"debootstrap failed ({str(e).strip().splitlines()[0]}); the "
                           "rootfs was built from the .deb files in /var/cache/apt/archives")
        source = "dpkg-deb -x of the .deb files in /var/cache/apt/archives (no debootstrap)"
        debootstrapped = False
        shutil.rmtree(b.rootfs)
        os.makedirs(b.rootfs)
        debs = sorted(glob.glob("/var/cache/apt/archives/*.deb"))
        required = [d for d in debs if subprocess.run(
            ["dpkg-deb", "-f", d, "Priority"], capture_output=True, text=True
        ).stdout.strip() in ("required", "important")]
        for d in required:
            bench.run(["dpkg-deb", "-x", d, b.rootfs])
    clean_apt(b.rootfs)
    b.commit()  # layer 1: minbase

    if debootstrapped:
        policy = os.path.join(b.rootfs, "usr/sbin/policy-rc.d")
        with open(policy, "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
        bench.run(["chroot", b.rootfs, "/usr/bin/env", "DEBIAN_FRONTEND=noninteractive",
                   "/bin/sh", "-c",
                   "apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                   + " ".join(BOOKWORM_PACKAGES) + " && apt-get clean"], timeout=1800)
        os.remove(policy)
    else:
        for d in sorted(set(glob.glob("/var/cache/apt/archives/*.deb")))[:150]:
            bench.run(["dpkg-deb", "-x", d, b.rootfs])
    clean_apt(b.rootfs)
    b.write(CORPUS_FILE, corpus(b.rootfs, 48 * MIB))
    b.commit()  # layer 2: packages + the corpus

    removed = 0
    for pattern in ("usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*",
                    "usr/share/info", "usr/share/lintian", "var/cache/debconf/templates.dat"):
        for p in glob.glob(os.path.join(b.rootfs, pattern)):
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.remove(p)
            removed += 1
    b.write(BIG_FILE, rng.randbytes(BIG_SIZE))
    b.write(SMALL_FILE, text(900))
    b.commit()  # layer 3: deletions + the 64 MiB file
    info = {"kind": "bookworm", "version": VERSIONS["bookworm"], "corpus_layer": 1,
            "rootfs": source, "packages": BOOKWORM_PACKAGES, "removed_in_layer_3": removed,
            "description": "Debian 12 minbase (debootstrap); apt packages + a 48 MiB "
                           "compressible file; deletions + a 64 MiB random file",
            **b.count_files()}
    return b, info


def build(bench, kind):
    """Builds `kind`, pushes it as gzip to bench.registry and converts it; returns image
    info with "expected" (path -> sha256)."""
    b, info = (build_bookworm if kind == "bookworm" else build_small)(bench)
    info["expected"] = b.expected
    b.push(bench.registry)
    return info
