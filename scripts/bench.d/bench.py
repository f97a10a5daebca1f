#!/usr/bin/python3
"""The driver of scripts/bench: imgfs against what a user would run instead, row by row.

scripts/bench prepares everything this needs (dependencies, the imgfs binary, an empty work
directory it removes afterwards) and is the way to run it. Everything this starts -- the
registry, the counting proxy, the WAN shaper, containerd, imgfs daemons and their mounts --
lives under the work directory and is stopped in `finally`, also on SIGTERM; scripts/bench's
trap catches whatever a SIGKILL would leave.

The image (images.py: Debian bookworm by default, or the generated `small` one) is built once
and cached; each run serves it from a private docker-registry on 127.0.0.1 behind the
counting proxy (tests/support/blob_proxy.py: registry-side bytes), and for the WAN rows
behind the shaper too (shaper.py: a round-trip time and one bandwidth for all connections).
The benchmark itself only talks to loopback.

Rows (each format of --formats: plain gzip OCI, eStargz, zstd:chunked; every row repeated R
times, imgfs and its alternative interleaved; the ratio is the median of the per-repetition
ratios imgfs/alternative, with their min and max), in the groups --rows selects:
  network rows, on loopback and on the WAN:
    cold first file          (cold-first) mount (--prefetch none, empty cache) + read a
                             900-byte file vs skopeo copy + umoci unpack + read it
    cold first file, bytes   registry bytes of the above
    cold whole image         (cold-whole) mount (default prefetch) + tar of every file
                             vs skopeo copy + umoci unpack + the same tar
    ... --prefetch all       the same with --prefetch all
    cold whole image, bytes  registry bytes of the default-prefetch read vs skopeo copy
    daemon peak RSS          the daemon's VmHWM after the whole-image read vs skopeo's
  shared index rows, gzip only, on loopback and on the WAN (shared-index): host A (imgfs
  pull + imgfs index push + imgfs index convert, once, not measured) publishes the layer
  indexes; host B measures
    cold first file, shared index   mount --prefetch none --trust-index-from <endpoint>
                             (empty cache) + read the 900-byte file vs the full pull of the
                             cold first file row (reused when that row ran on the network)
    cold first file, index convert  the same, mounted by the converted image index's digest
    ... registry bytes       registry bytes of both, the index artifact's in the JSON
  local rows (local; the cache full from the loopback cold-whole rows, or filled the same
  way when those are left out; page cache dropped before each):
    warm remount + first file  vs umoci unpack from the local OCI layout (+ registry requests)
    sequential read, store     the 64 MiB random file and the compressible file through a
                               fresh warm mount vs the unpacked tree on local disk; the
                               compressible file also vs zcat (zstd -dc) of its layer
    sequential read, page cache  the same files read a second time vs the unpacked tree's
    metadata walk            find -printf of size, owner, mode, mtime (an lstat per entry)
    random 4 KiB reads       reads/s at random offsets over every file >= 4 KiB
Python 3 standard library only.
"""

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import images  # noqa: E402
import report  # noqa: E402

MIB = images.MIB
FORMATS = ("gzip", "estargz", "zstdchunked")
# The row groups --rows selects; each names the rows it adds (see the module docstring).
ROW_GROUPS = ("cold-first", "cold-whole", "shared-index", "local")
ROW_ALIASES = {"cold": ("cold-first", "cold-whole")}
REPO = images.REPO
LAYER_EXT = {"gzip": "zcat", "estargz": "zcat", "zstdchunked": "zstd -dc"}


def log(msg):
    print(f"  {msg}", flush=True)


class CommandError(Exception):
    pass


class CommandTimeout(CommandError):
    pass


class Bench:
    def __init__(self, args):
        self.root = args.root
        self.imgfs = args.imgfs
        self.work = args.work
        self.json_path = args.json
        self.repeat = max(1, args.repeat)
        self.kind = args.image
        self.networks = args.networks.split(",")
        self.wan_formats = args.wan_formats.split(",")
        self.rows = args.rows
        self.formats = args.formats
        self.rtt_ms, self.mbit = args.wan_rtt_ms, args.wan_mbit
        self.logs = self.mkdir("logs")
        self.background = []  # (name, Popen) stopped in reverse order by close()
        self.mounts = {}  # mount point -> daemon pid (or None)
        self.results = []
        self.notes = []
        self.drop_caches_ok = None
        self.command_count = 0
        self.gzip_only_umoci = set()  # formats umoci cannot unpack as pulled
        self.unpack_s = {}  # format -> umoci unpack seconds of the loopback cold rows
        self.cold_alt = {}  # (network, format) -> the cold rows' alternative, per repetition

    # ---- processes ----------------------------------------------------------------------

    def mkdir(self, *parts):
        path = os.path.join(self.work, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def run(self, argv, *, stdout_path=None, timeout=600, env=None, cwd=None):
        """Runs argv to completion; returns (wall seconds, peak RSS in KiB).

        The RSS comes from wait4()'s rusage, which covers the process and the children it
        waited for. Fails with CommandError (naming the log) when the command fails, with
        CommandTimeout when it was killed after `timeout` seconds.
        """
        self.command_count += 1
        name = os.path.basename(argv[0]) if argv[0] != "/bin/bash" else "sh"
        err_path = os.path.join(self.logs, f"{self.command_count:04d}-{name}.err")
        out = open(stdout_path or os.devnull, "wb")
        err = open(err_path, "wb")
        self.last_err_path = err_path
        timed_out = []
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd, start_new_session=True)

            def kill():
                timed_out.append(True)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # SIGTERM: the command must not outlive the cleanup
                kill()
                os.waitpid(proc.pid, 0)
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            out.close()
            err.close()
        if timed_out:
            raise CommandTimeout(f"{' '.join(argv)} was stopped after {timeout} s")
        if proc.returncode != 0:
            with open(err_path, errors="replace") as f:
                tail = f.read()[-3000:]
            raise CommandError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}")
        return seconds, usage.ru_maxrss

    def shell(self, script, **kw):
        return self.run(["/bin/bash", "-o", "pipefail", "-c", script], **kw)

    def start_background(self, name, argv, env=None):
        out = open(os.path.join(self.logs, f"{name}.log"), "wb")
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        out.close()
        self.background.append((name, proc))
        return proc

    def stop_background(self, name):
        for i, (n, proc) in enumerate(self.background):
            if n == name:
                del self.background[i]
                stop_process(proc)
                return

    def close(self):
        for mnt in list(self.mounts):
            try:
                self.unmount(mnt)
            except Exception as e:  # cleanup goes on whatever one step says
                print(f"scripts/bench: unmounting {mnt}: {e}", file=sys.stderr)
        while self.background:
            _, proc = self.background.pop()
            stop_process(proc)

    # ---- registry, proxies, containerd ------------------------------------------------

    def start_registry(self):
        port = free_port()
        self.registry = f"127.0.0.1:{port}"
        self.storage = os.path.join(self.work, "registry")
        os.makedirs(self.storage, exist_ok=True)
        config = os.path.join(self.work, "registry.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
                    "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                    f"http:\n  addr: {self.registry}\n  secret: imgfs-bench\n")
        env = dict(os.environ, OTEL_SDK_DISABLED="true")
        proc = self.start_background("registry", ["/usr/bin/docker-registry", "serve", config],
                                     env=env)
        wait_until(lambda: http_ok(f"http://{self.registry}/v2/"), proc, 20,
                   f"docker-registry on {self.registry} (log: {self.logs}/registry.log)")

    def start_port_file_process(self, name, argv, port_file, what):
        proc = self.start_background(name, argv + ["--port-file", port_file])
        address = []

        def ready():
            try:
                with open(port_file) as f:
                    a = f"127.0.0.1:{int(f.read())}"
            except (OSError, ValueError):
                return False
            address[:] = [a]
            return http_ok(f"http://{a}/v2/")

        wait_until(ready, proc, 20, what)
        return address[0]

    def start_proxies(self):
        self.proxy_log = os.path.join(self.work, "proxy-requests.jsonl")
        registry_port = self.registry.split(":")[1]
        self.proxy = self.start_port_file_process(
            "proxy", ["/usr/bin/python3", os.path.join(self.root, "tests", "support",
                                                        "blob_proxy.py"),
                      "--upstream-port", registry_port, "--log", self.proxy_log],
            os.path.join(self.work, "proxy.port"),
            "the counting proxy (tests/support/blob_proxy.py)")
        self.endpoints = {"loopback": self.proxy}
        if "wan" in self.networks:
            self.endpoints["wan"] = self.start_port_file_process(
                "shaper", ["/usr/bin/python3", os.path.join(self.root, "scripts", "bench.d",
                                                             "shaper.py"),
                           "--upstream-port", self.proxy.split(":")[1],
                           "--rtt-ms", str(self.rtt_ms), "--mbit", str(self.mbit)],
                os.path.join(self.work, "shaper.port"), "the WAN shaper (shaper.py)")

    def proxy_mark(self):
        return len(self.proxy_lines())

    def proxy_lines(self):
        try:
            with open(self.proxy_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def proxy_bytes(self, mark):
        lines = self.proxy_entries(mark)
        return sum(int(e.get("bytes", 0)) for e in lines), len(lines)

    def proxy_entries(self, mark):
        # The proxy logs a request before its last bytes go out; give it a moment.
        time.sleep(0.2)
        return self.proxy_lines()[mark:]

    def convert_with_containerd(self):
        cdir = self.mkdir("containerd")
        sock = os.path.join(cdir, "containerd.sock")
        config = os.path.join(cdir, "config.toml")
        with open(config, "w") as f:
            f.write("version = 2\n"
                    f'root = "{self.mkdir("containerd", "root")}"\n'
                    f'state = "{self.mkdir("containerd", "state")}"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri", '
                    '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
                    '"io.containerd.snapshotter.v1.devmapper", '
                    '"io.containerd.snapshotter.v1.aufs"]\n'
                    f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n')
        proc = self.start_background("containerd", ["/usr/bin/containerd", "--config", config])
        ctr = ["/usr/bin/ctr-remote", "--address", sock]

        def ready():
            return subprocess.run(ctr + ["version"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0

        wait_until(ready, proc, 30, f"containerd (log: {self.logs}/containerd.log)")
        source = f"{self.registry}/{REPO}:gzip"
        self.run(ctr + ["content", "fetch", "--plain-http", source], timeout=1800)
        for kind in ("estargz", "zstdchunked"):
            target = f"{self.registry}/{REPO}:{kind}"
            seconds, _ = self.run(ctr + ["image", "convert", f"--{kind}", "--oci", source,
                                         target], timeout=1800)
            self.run(ctr + ["image", "push", "--plain-http", target], timeout=1800)
            log(f"converted to {kind} with ctr-remote in {seconds:.1f} s and pushed")
        self.stop_background("containerd")
        shutil.rmtree(cdir, ignore_errors=True)

    def layers(self, fmt):
        accept = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.oci.image.index.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json"])
        manifest = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{fmt}", accept)
        if "manifests" in manifest:
            digest = manifest["manifests"][0]["digest"]
            manifest = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{digest}", accept)
        return [{"media_type": x["mediaType"], "size": int(x["size"]), "digest": x["digest"]}
                for x in manifest["layers"]]

    def blob_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hexd[:2], hexd, "data")

    def prepare_image(self):
        """Starts the registry on the cached image, building and caching it first if needed."""
        info = images.load_cached(self.kind)
        if info is None:
            print(f"-- building the {self.kind} image once (cached in "
                  f"{images.cache_dir(self.kind)})", flush=True)
            self.start_registry()
            started = time.monotonic()
            info = images.build(self, self.kind)
            self.convert_with_containerd()
            info["build_s"] = time.monotonic() - started
            images.save(self, self.kind, info, self.storage)
            log(f"built in {info['build_s']:.0f} s")
        else:
            images.restore(self, self.kind, os.path.join(self.work, "registry"))
            self.start_registry()
        self.image = info
        self.expected = info["expected"]
        self.image["layers"] = {fmt: self.layers(fmt) for fmt in FORMATS}
        for fmt in FORMATS:
            sizes = [x["size"] for x in self.image["layers"][fmt]]
            log(f"{fmt}: {len(sizes)} layers, {sum(sizes) / MIB:.1f} MiB compressed")

    # ---- imgfs ------------------------------------------------------------------------------

    def mount(self, endpoint, fmt, cache, mnt, extra=(), ref=None, expect_log=None):
        """Mounts REPO:fmt (or REPO + `ref`, ":tag" or "@digest") from `endpoint`; with
        `expect_log`, fails unless the command's stderr (at log level info) says it."""
        os.makedirs(mnt, exist_ok=True)
        env = dict(os.environ, IMGFS_LOG="info") if expect_log else None
        seconds, _ = self.run([self.imgfs, "mount", "--cache", cache, *extra,
                               f"{endpoint}/{REPO}{ref or ':' + fmt}", mnt], timeout=600,
                              env=env)
        self.mounts[mnt] = daemon_pid(mnt)
        if expect_log:
            with open(self.last_err_path, errors="replace") as f:
                if expect_log not in f.read():
                    raise CommandError(f"imgfs mount of {endpoint}/{REPO}{ref} did not log "
                                       f"'{expect_log}' (see {self.last_err_path})")
        return seconds

    def unmount(self, mnt):
        pid = self.mounts.pop(mnt, None)
        subprocess.run([self.imgfs, "umount", mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (is_mounted(mnt) or alive(pid)):
            time.sleep(0.02)
        if is_mounted(mnt):
            self.notes.append(f"{mnt} was still mounted after imgfs umount")
            subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
        if alive(pid):
            self.notes.append(f"imgfs daemon {pid} still ran 10 s after its unmount: killed")
            os.kill(pid, signal.SIGKILL)

    def check_file(self, path, rel):
        with open(path, "rb") as f:
            digest = sha256_stream(f)
        if digest != self.expected[rel]:
            raise CommandError(f"{path}: content differs from what was written into the image")

    def drop_caches(self):
        os.sync()
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            ok = True
        except OSError:
            ok = False
        if self.drop_caches_ok is None:
            self.drop_caches_ok = ok
            if not ok:
                self.notes.append("echo 3 > /proc/sys/vm/drop_caches was refused: the "
                                  "'page cache dropped' rows ran with a warm page cache")

    # ---- results ------------------------------------------------------------------------

    def add(self, row, network, fmt, metric, unit, imgfs_runs, alt_runs, alt_what,
            better="lower", **detail):
        pairs = [(a, b) for a, b in zip(imgfs_runs, alt_runs)
                 if a is not None and b not in (None, 0)]
        ratios = [a / b for a, b in pairs]
        entry = {"row": row, "network": network, "format": fmt, "metric": metric,
                 "unit": unit, "better": better,
                 "imgfs": median(imgfs_runs), "alternative": median(alt_runs),
                 "alternative_is": alt_what,
                 "ratio": statistics.median(ratios) if ratios else None,
                 "ratio_min": min(ratios) if ratios else None,
                 "ratio_max": max(ratios) if ratios else None,
                 "imgfs_runs": imgfs_runs, "alternative_runs": alt_runs, "detail": detail}
        entry["target"] = report.check_target(entry)
        self.results.append(entry)
        return entry

    # ---- network rows ---------------------------------------------------------------------

    def imgfs_cold(self, endpoint, fmt, cache, prefetch, read_all, timeout, extra=(), ref=None,
                   expect_log=None):
        """One cold imgfs measurement: (seconds, bytes, requests, daemon VmHWM KiB, timed out,
        the proxy's log entries). `extra`, `ref`, `expect_log`: as for mount()."""
        mnt = os.path.join(self.work, "mnt")
        mark = self.proxy_mark()
        timed_out = False
        t_mount = self.mount(endpoint, fmt, cache, mnt, ["--prefetch", prefetch, *extra], ref,
                             expect_log)
        try:
            if read_all:
                t_read, _ = self.shell(f"tar -C {mnt} -cf - . | cat >/dev/null",
                                       timeout=timeout)
            else:
                t_read = timed_read(os.path.join(mnt, images.SMALL_FILE))
                self.check_file(os.path.join(mnt, images.SMALL_FILE), images.SMALL_FILE)
        except CommandTimeout:
            t_read, timed_out = timeout, True
        rss = vm_hwm(self.mounts[mnt])
        self.unmount(mnt)
        entries = self.proxy_entries(mark)
        total_bytes = sum(int(e.get("bytes", 0)) for e in entries)
        return t_mount + t_read, total_bytes, len(entries), rss, timed_out, entries

    def alternative_cold(self, network, fmt, keep, read_all=True):
        """skopeo copy + umoci unpack + the first file + (with `read_all`) a read of
        everything; with `keep` the layout and the tree stay for the warm rows (oci-<fmt>,
        bundle-<fmt>)."""
        endpoint = self.endpoints[network]
        oci = os.path.join(self.work, f"oci-{fmt}" if keep else f"oci-{network}-{fmt}")
        bundle = os.path.join(self.work, f"bundle-{fmt}" if keep else f"bundle-{network}-{fmt}")
        shutil.rmtree(oci, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
        pull = ["skopeo", "copy", "--quiet", "--src-tls-verify=false"]
        if fmt in self.gzip_only_umoci:
            pull += ["--dest-compress", "--dest-compress-format", "gzip"]
        source = f"docker://{endpoint}/{REPO}:{fmt}"
        mark = self.proxy_mark()
        t_pull, rss = self.run(pull + [source, f"oci:{oci}:bench"], timeout=1200)
        pulled, _ = self.proxy_bytes(mark)
        try:
            t_unpack, _ = self.run(["umoci", "unpack", "--image", f"{oci}:bench", bundle],
                                   timeout=1200)
        except CommandError as e:
            if fmt in self.gzip_only_umoci:
                raise
            # umoci before 0.4.8 knows no zstd layers: its users let skopeo recompress them
            # to gzip on the way in.
            self.notes.append(f"umoci cannot unpack the {fmt} image as pulled "
                              f"({str(e).strip().splitlines()[-1].strip()}); its alternative "
                              "is skopeo copy --dest-compress-format gzip + umoci unpack")
            self.gzip_only_umoci.add(fmt)
            return self.alternative_cold(network, fmt, keep, read_all)
        small = os.path.join(bundle, "rootfs", images.SMALL_FILE)
        t_cat = timed_read(small)
        self.check_file(small, images.SMALL_FILE)
        t_all = None
        if read_all:
            t_all, _ = self.shell(f"tar -C {bundle}/rootfs -cf - . | cat >/dev/null",
                                  timeout=1200)
        if not keep:
            shutil.rmtree(oci)
            shutil.rmtree(bundle)
        return {"pull": t_pull, "unpack": t_unpack, "cat": t_cat, "read_all": t_all,
                "bytes": pulled, "rss": rss}

    def cold(self, network, fmt, first=True, whole_image=True):
        """The cold rows of one format on one network: the first file (`first`) and the
        whole image (`whole_image`), each repetition against a full pull + unpack."""
        endpoint = self.endpoints[network]
        keep = network == "loopback"
        timeout = 300 if network == "wan" else 600
        one, whole, every, alt = [], [], [], []
        for i in range(self.repeat):
            last = i == self.repeat - 1
            if first:
                c = self.mkdir(f"cache-{network}-{fmt}-{i}")
                one.append(self.imgfs_cold(endpoint, fmt, c, "none", False, timeout))
                shutil.rmtree(c)
            if whole_image:
                skip = any(x[4] for x in whole)  # one timeout is enough to know
                c = self.mkdir(f"cache-{network}-{fmt}-{i}")
                whole.append(None if skip else
                             self.imgfs_cold(endpoint, fmt, c, "landmark", True, timeout))
                if keep and last:
                    os.rename(c, os.path.join(self.work, f"cache-{fmt}"))  # the warm rows'
                else:
                    shutil.rmtree(c)
                skip = any(x[4] for x in every)
                c = self.mkdir(f"cache-{network}-{fmt}-{i}")
                every.append(None if skip else
                             self.imgfs_cold(endpoint, fmt, c, "all", True, timeout))
                shutil.rmtree(c)
            alt.append(self.alternative_cold(network, fmt, keep and last, whole_image))
            parts = []
            if first:
                parts.append(f"first file {one[-1][0]:.2f} s")
            if whole_image:
                w = whole[-1] or (None,) * 6
                parts.append(f"whole image {fmt_s(w[0])} / "
                             f"{fmt_s(every[-1] and every[-1][0])} with --prefetch all")
            log(f"{network} {fmt} #{i + 1}: {', '.join(parts)}; "
                f"pull {alt[-1]['pull']:.2f} s + unpack {alt[-1]['unpack']:.2f} s")
        if network == "loopback":
            self.unpack_s[fmt] = [a["unpack"] for a in alt]
        self.cold_alt[(network, fmt)] = alt
        alt_what = self.alternative_name(fmt)
        if first:
            self.add("cold first file", network, fmt, "time", "s", [x[0] for x in one],
                     [a["pull"] + a["unpack"] + a["cat"] for a in alt], alt_what + " + read",
                     imgfs_requests=[x[2] for x in one], imgfs_vmhwm_kib=[x[3] for x in one])
            self.add("cold first file", network, fmt, "registry bytes", "B",
                     [x[1] for x in one], [a["bytes"] for a in alt], "skopeo copy")
        if not whole_image:
            return
        for name, runs in (("cold whole image", whole), ("cold whole image, --prefetch all",
                                                           every)):
            got = [x for x in runs if x]
            self.add(name, network, fmt, "time", "s", [x[0] for x in got],
                     [a["pull"] + a["unpack"] + a["read_all"] for a in alt],
                     alt_what + " + tar of every file",
                     timed_out=any(x[4] for x in got), imgfs_requests=[x[2] for x in got],
                     imgfs_vmhwm_kib=[x[3] for x in got],
                     pull_s=[a["pull"] for a in alt], unpack_s=[a["unpack"] for a in alt],
                     read_all_s=[a["read_all"] for a in alt])
        got = [x for x in whole if x]
        self.add("cold whole image", network, fmt, "registry bytes", "B",
                 [x[1] for x in got], [a["bytes"] for a in alt], "skopeo copy")
        self.add("daemon peak RSS", network, fmt, "peak RSS", "KiB", [x[3] for x in got],
                 [a["rss"] for a in alt], "skopeo copy (ru_maxrss)",
                 with_prefetch_all_kib=[x[3] for x in every if x])

    def alternative_name(self, fmt):
        return ("skopeo copy (to gzip) + umoci unpack" if fmt in self.gzip_only_umoci
                else "skopeo copy + umoci unpack")

    # ---- shared index rows ------------------------------------------------------------------

    def publish_shared_index(self):
        """Host A, once per run: `imgfs pull` of the gzip image into a cache of its own, then
        `imgfs index push` (a referrers artifact of the image manifest) and `imgfs index
        convert` (an image index binding manifest and artifact, tagged gzip-indexed), all
        straight to the registry, outside the measured rows. Returns what the rows report."""
        if getattr(self, "shared", None):
            return self.shared
        cache = self.mkdir("cache-index-host-a")
        ref = f"{self.registry}/{REPO}:gzip"
        out = os.path.join(self.work, "index-out")
        t_pull, _ = self.run([self.imgfs, "pull", "--quiet", "--cache", cache, ref],
                             timeout=1800)
        t_push, _ = self.run([self.imgfs, "index", "push", "--cache", cache, ref],
                             stdout_path=out)
        with open(out) as f:
            pushed = f.read()
        artifact = next((w for w in pushed.split() if w.startswith("sha256:")), None)
        t_convert, _ = self.run([self.imgfs, "index", "convert", "--cache", cache, ref,
                                 "gzip-indexed"], stdout_path=out)
        with open(out) as f:
            converted = f.read().strip()
        if artifact is None or "@sha256:" not in converted:
            raise CommandError(f"imgfs index push / convert printed no digest: {pushed!r}, "
                               f"{converted!r}")
        shutil.rmtree(cache)
        digest = converted.split("@", 1)[1]
        index = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{digest}",
                          "application/vnd.oci.image.index.v1+json")
        bound = next((m["digest"] for m in index["manifests"] if m.get("artifactType")), None)
        if bound != artifact:
            raise CommandError(f"imgfs index convert bound artifact {bound}, index push "
                               f"pushed {artifact}: the rows would measure two artifacts")
        manifest = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{artifact}",
                             "application/vnd.oci.image.manifest.v1+json")
        blobs = {x["digest"]: int(x["size"]) for x in manifest["layers"]}
        self.shared = {"artifact": artifact, "blobs": blobs, "converted": "@" + digest,
                       "detail": {"index_artifact_bytes": sum(blobs.values()),
                                  "index_layers": len(blobs), "host_a_pull_s": t_pull,
                                  "index_push_s": t_push, "index_convert_s": t_convert}}
        log(f"host A: imgfs pull {t_pull:.1f} s, index push {t_push:.1f} s ({len(blobs)} "
            f"layer indexes, {sum(blobs.values()) / 1024:.0f} KiB), index convert "
            f"{t_convert:.1f} s")
        return self.shared

    def shared_index(self, network):
        """Host B: the cold first file of the gzip image on an empty cache, its layer indexes
        found through referrers (--trust-index-from the endpoint) and, second variant, through
        the image index of `index convert` mounted by digest (no trust configuration), against
        the full pull of the cold first file row (its alternative when that row ran on this
        network in this run, else measured here, repetition by repetition)."""
        shared = self.publish_shared_index()
        endpoint = self.endpoints[network]
        timeout = 300 if network == "wan" else 600
        reuse = self.cold_alt.get((network, "gzip"))
        variants = (("shared index", ["--trust-index-from", endpoint], None,
                     "(from referrers)"),
                    ("index convert", [], shared["converted"], "(bound by the image index)"))
        runs = {name: [] for name, *_ in variants}
        alt = []
        for i in range(self.repeat):
            for name, extra, ref, how in variants:
                c = self.mkdir(f"cache-{network}-shared-{i}")
                runs[name].append(self.imgfs_cold(
                    endpoint, "gzip", c, "none", False, timeout, extra, ref,
                    expect_log=f"mounted lazily with the shared index in {shared['artifact']} "
                    + how))
                shutil.rmtree(c)
            alt.append(reuse[i] if reuse else
                       self.alternative_cold(network, "gzip", False, False))
            log(f"{network} gzip shared index #{i + 1}: first file "
                + ", ".join(f"{runs[n][-1][0]:.2f} s ({runs[n][-1][1] / MIB:.2f} MiB, {n})"
                            for n in runs)
                + f"; pull {alt[-1]['pull']:.2f} s + unpack {alt[-1]['unpack']:.2f} s"
                + (" (of the cold rows)" if reuse else ""))
        plain = next((r["imgfs_runs"] for r in self.results
                      if (r["row"], r["network"], r["format"], r["metric"])
                      == ("cold first file", network, "gzip", "time")), None)
        alt_what = self.alternative_name("gzip")
        for name, runs_ in runs.items():
            index_bytes = [sum(int(e.get("bytes", 0)) for e in x[5]
                               if e.get("digest") in shared["blobs"]
                               or shared["artifact"] in e.get("path", "")) for x in runs_]
            self.add(f"cold first file, {name}", network, "gzip", "time", "s",
                     [x[0] for x in runs_],
                     [a["pull"] + a["unpack"] + a["cat"] for a in alt], alt_what + " + read",
                     imgfs_requests=[x[2] for x in runs_], without_index_s=plain,
                     alternative_of_cold_rows=bool(reuse), **shared["detail"])
            # index_bytes: the artifact manifest and its blobs; the rest is manifests,
            # config, the referrers lookup and the spans of the layers.
            self.add(f"cold first file, {name}", network, "gzip", "registry bytes", "B",
                     [x[1] for x in runs_], [a["bytes"] for a in alt], "skopeo copy",
                     index_bytes=index_bytes,
                     other_bytes=[x[1] - b for x, b in zip(runs_, index_bytes)],
                     index_artifact_bytes=shared["detail"]["index_artifact_bytes"])

    # ---- local rows -------------------------------------------------------------------------

    def local_prerequisites(self, fmt):
        """What the local rows take from the loopback cold rows, made here when --rows left
        those out: the cache of a default-prefetch whole-image read (cache-<fmt>), the
        unpacked tree (bundle-<fmt>) and the umoci unpack times, one per repetition."""
        cache = os.path.join(self.work, f"cache-{fmt}")
        if not os.path.isdir(cache):
            log(f"{fmt}: filling the local rows' cache (mount + tar of every file)")
            self.imgfs_cold(self.proxy, fmt, self.mkdir(f"cache-{fmt}"), "landmark", True, 600)
        if fmt in self.unpack_s:
            return
        log(f"{fmt}: skopeo copy + umoci unpack for the local rows")
        unpack = [self.alternative_cold("loopback", fmt, True, False)["unpack"]]
        bundle = os.path.join(self.work, f"bundle-{fmt}-again")
        for _ in range(1, self.repeat):
            seconds, _ = self.run(["umoci", "unpack", "--image",
                                   f"{os.path.join(self.work, f'oci-{fmt}')}:bench", bundle],
                                  timeout=1200)
            unpack.append(seconds)
            shutil.rmtree(bundle)
        self.unpack_s[fmt] = unpack

    def warm(self, fmt):
        self.local_prerequisites(fmt)
        mnt = os.path.join(self.work, "mnt")
        cache = os.path.join(self.work, f"cache-{fmt}")
        bundle = os.path.join(self.work, f"bundle-{fmt}", "rootfs")
        big, corpus = images.BIG_FILE, images.CORPUS_FILE
        layer = self.image["layers"][fmt][self.image["corpus_layer"]]
        blob = self.blob_path(layer["digest"])
        decoder = LAYER_EXT[fmt]
        self.shell(f"{decoder} <{blob} | wc -c >{self.work}/layer-size")
        with open(f"{self.work}/layer-size") as f:
            layer_bytes = int(f.read())
        # The eStargz TOC and landmark entries are in the layer's tar, so umoci unpacks them;
        # imgfs hides them, as stargz-snapshotter does: the random reads leave them out.
        files = [f for f in regular_files(bundle) if f[0] not in ESTARGZ_METADATA]
        m = {k: [] for k in ("remount", "requests", "unpack", "walk", "alt_walk",
                             "big", "big_pc", "corpus", "corpus_pc", "alt_big", "alt_big_pc",
                             "alt_corpus", "alt_corpus_pc", "zcat", "rand", "alt_rand")}
        endpoint = self.proxy
        for i in range(self.repeat):
            # Warm remount + first file, then a metadata walk in the same mount. Timed: the
            # mount command (start to exit) and the read, not the harness's bookkeeping
            # between them (finding the daemon's pid in /proc for its RSS).
            self.drop_caches()
            mark = self.proxy_mark()
            mount_s = self.mount(endpoint, fmt, cache, mnt)
            m["remount"].append(mount_s + timed_read(os.path.join(mnt, images.SMALL_FILE)))
            self.check_file(os.path.join(mnt, images.SMALL_FILE), images.SMALL_FILE)
            self.drop_caches()
            m["walk"].append(self.walk(mnt))
            self.unmount(mnt)
            m["requests"].append(self.proxy_bytes(mark)[1])
            self.drop_caches()
            m["alt_walk"].append(self.walk(bundle))
            # Sequential reads: from the store (page cache dropped), then again (cached).
            for rel, key in ((big, "big"), (corpus, "corpus")):
                self.mount(endpoint, fmt, cache, mnt)
                self.drop_caches()
                m[key].append(timed_read(os.path.join(mnt, rel)))
                m[key + "_pc"].append(timed_read(os.path.join(mnt, rel)))
                if i == 0:
                    self.check_file(os.path.join(mnt, rel), rel)
                self.unmount(mnt)
                self.drop_caches()
                m["alt_" + key].append(timed_read(os.path.join(bundle, rel)))
                m["alt_" + key + "_pc"].append(timed_read(os.path.join(bundle, rel)))
            self.drop_caches()
            m["zcat"].append(self.shell(f"{decoder} <{blob} >/dev/null")[0])
            # Random 4 KiB reads, the same offsets on both sides.
            self.mount(endpoint, fmt, cache, mnt)
            self.drop_caches()
            m["rand"].append(random_reads(mnt, files, seed=i))
            self.unmount(mnt)
            self.drop_caches()
            m["alt_rand"].append(random_reads(bundle, files, seed=i))
        # The alternative is the unpack step of the loopback cold rows' alternative: umoci
        # unpack of the layout skopeo just wrote, repetition by repetition.
        self.add("warm remount + first file", "local", fmt, "time", "s", m["remount"],
                 self.unpack_s[fmt], "umoci unpack from the local OCI layout",
                 registry_requests=m["requests"])
        sizes = {big: os.path.getsize(os.path.join(bundle, big)),
                 corpus: os.path.getsize(os.path.join(bundle, corpus))}

        def mibs(rel, runs):
            return [sizes[rel] / MIB / t for t in runs]

        for rel, key, what in ((big, "big", "64 MiB random"),
                               (corpus, "corpus", f"{sizes[corpus] // MIB} MiB compressible")):
            self.add(f"sequential read, store, {what}", "local", fmt, "throughput", "MiB/s",
                     mibs(rel, m[key]), mibs(rel, m["alt_" + key]),
                     "cat from the unpacked tree (local disk)", better="higher",
                     page_cache_dropped=self.drop_caches_ok)
            if key == "corpus":
                self.add(f"sequential read, store, {what}, vs zcat", "local", fmt,
                         "throughput", "MiB/s", mibs(rel, m[key]),
                         [layer_bytes / MIB / t for t in m["zcat"]],
                         f"{decoder} of layer {self.image['corpus_layer'] + 1} "
                         f"({layer['size'] / MIB:.0f} MiB -> {layer_bytes / MIB:.0f} MiB)",
                         better="higher")
            self.add(f"sequential read, page cache, {what}", "local", fmt, "throughput",
                     "MiB/s", mibs(rel, m[key + "_pc"]), mibs(rel, m["alt_" + key + "_pc"]),
                     "the unpacked tree's file in the page cache", better="higher")
        self.add("metadata walk", "local", fmt, "time", "s", m["walk"], m["alt_walk"],
                 f"the same walk of the unpacked tree ({len(files)} files >= 4 KiB)")
        self.add("random 4 KiB reads", "local", fmt, "reads/s", "1/s", m["rand"],
                 m["alt_rand"], "the unpacked tree", better="higher")
        log(f"{fmt}: warm remount + first file {median(m['remount']) * 1000:.0f} ms "
            f"({max(m['requests'])} registry requests); 64 MiB from the store "
            f"{median(mibs(big, m['big'])):.0f} MiB/s vs disk "
            f"{median(mibs(big, m['alt_big'])):.0f} MiB/s; walk "
            f"{median(m['walk']) * 1000:.0f} ms vs {median(m['alt_walk']) * 1000:.0f} ms")

    def walk(self, top):
        return self.run(["find", top, "-printf", "%s %u %m %T@\n"], timeout=600)[0]

    def measures_something(self):
        cold = {"cold-first", "cold-whole"} & set(self.rows) and any(
            n == "loopback" or f in self.wan_formats for n in self.networks for f in self.formats)
        return bool(cold or ("shared-index" in self.rows and "gzip" in self.formats)
                    or ("local" in self.rows and "loopback" in self.networks))

    # ---- report -------------------------------------------------------------------------------

    def machine(self):
        info = {"cpus": os.cpu_count(), "kernel": platform.release(), "arch": platform.machine()}
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        info["cpu"] = line.split(":", 1)[1].strip()
                        break
            with open("/proc/meminfo") as f:
                info["memory_kib"] = int(f.readline().split()[1])
        except OSError:
            pass
        info["loadavg_1m"] = os.getloadavg()[0]
        # The binary is not rebuilt when present: its time tells whether it matches the tree.
        info["imgfs_binary_mtime"] = time.strftime("%Y-%m-%dT%H:%M:%S",
                                                   time.localtime(os.path.getmtime(self.imgfs)))
        info["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        # code_commit: the last commit that changed anything but scripts/ and the docs.
        for tool, argv in (("source_commit", ["git", "-C", self.root, "rev-parse", "--short",
                                              "HEAD"]),
                           ("code_commit", ["git", "-C", self.root, "log", "-1", "--format=%h",
                                            "--", ".", ":!scripts", ":!docs",
                                            ":!README.md"]),
                           ("skopeo", ["skopeo", "--version"]),
                           ("umoci", ["umoci", "--version"])):
            try:
                info[tool] = subprocess.run(argv, capture_output=True, text=True,
                                            timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        return info

    def main(self):
        if not self.measures_something():
            raise CommandError(f"--rows {','.join(self.rows)} --formats "
                               f"{','.join(self.formats)} --networks {','.join(self.networks)}"
                               " select no row (shared-index is gzip only, local needs "
                               "loopback)")
        started = time.monotonic()
        machine = self.machine()
        print(f"-- the {self.kind} image", flush=True)
        self.prepare_image()
        self.start_proxies()
        first, whole = "cold-first" in self.rows, "cold-whole" in self.rows
        for network in self.networks:
            formats = [f for f in self.formats if network == "loopback" or f in self.wan_formats]
            shaping = f" ({self.rtt_ms:g} ms, {self.mbit:g} Mbit/s)" if network == "wan" else ""
            if (first or whole) and formats:
                print(f"-- cold rows on {network}{shaping}", flush=True)
                for fmt in formats:
                    self.cold(network, fmt, first, whole)
            if "shared-index" in self.rows and "gzip" in self.formats:
                print(f"-- shared index rows on {network}{shaping}", flush=True)
                self.shared_index(network)
        if "local" in self.rows and "loopback" in self.networks:
            print("-- warm rows", flush=True)
            for fmt in self.formats:
                self.warm(fmt)
        machine["loadavg_1m_end"] = os.getloadavg()[0]
        image = {k: v for k, v in self.image.items() if k != "expected"}
        document = {"machine": machine, "image": image, "repeat": self.repeat,
                    "rows": self.rows, "formats": self.formats,
                    "wan": {"rtt_ms": self.rtt_ms, "mbit": self.mbit},
                    "duration_s": time.monotonic() - started, "results": self.results,
                    "notes": self.notes}
        with open(self.json_path, "w") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
        print()
        print(report.text_table(document))
        print(f"\nJSON: {self.json_path}; {document['duration_s'] / 60:.1f} min")


# ---- helpers ------------------------------------------------------------------------------


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_s(v):
    return "n/a" if v is None else f"{v:.2f} s"


def timed_read(path):
    """Seconds to read the whole file in 1 MiB reads (in this process: no exec to time)."""
    buf = bytearray(MIB)
    view = memoryview(buf)
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.readv(fd, [view]) > 0:
            pass
    finally:
        os.close(fd)
    return time.perf_counter() - start


ESTARGZ_METADATA = {"stargz.index.json", ".prefetch.landmark", ".no.prefetch.landmark"}


def regular_files(top):
    out = []
    for dirpath, dnames, fnames in os.walk(top):
        dnames.sort()
        for n in sorted(fnames):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if (st.st_mode & 0o170000) == 0o100000 and st.st_size >= 4096:
                out.append((os.path.relpath(p, top), st.st_size))
    return out


def random_reads(top, files, seed, limit=4000, seconds=2.0):
    """Reads/s of 4 KiB preads at aligned offsets chosen by bytes over `files`."""
    rng = random.Random(seed)
    weights = [s for _, s in files]
    picks = rng.choices(range(len(files)), weights=weights, k=limit)
    fds = {}
    count = 0
    start = time.perf_counter()
    try:
        for idx in picks:
            rel, size = files[idx]
            fd = fds.get(idx)
            if fd is None:
                fd = fds[idx] = os.open(os.path.join(top, rel), os.O_RDONLY)
            offset = rng.randrange(0, max(1, size // 4096)) * 4096
            os.pread(fd, 4096, offset)
            count += 1
            if time.perf_counter() - start > seconds:
                break
        elapsed = time.perf_counter() - start
    finally:
        for fd in fds.values():
            os.close(fd)
    return count / elapsed


def stop_process(proc):
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def http_json(url, accept):
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.load(r)


def wait_until(ready, proc, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if not ready():
        raise CommandError(f"{what} did not start")


def daemon_pid(mnt):
    """The imgfs process serving mnt: its command line names the mount point."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and b"imgfs" in os.path.basename(args[0]) and mnt.encode() in args:
            return int(entry)
    return None


def vm_hwm(pid):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def alive(pid):
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def sha256_stream(f):
    h = hashlib.sha256()
    for block in iter(lambda: f.read(MIB), b""):
        h.update(block)
    return h.hexdigest()


def choice_list(choices, aliases=None):
    """An argparse type: a comma list of `choices` (and of the names of `aliases`, each
    standing for several), in the order of `choices`."""
    aliases = aliases or {}

    def parse(text):
        picked = set()
        for name in filter(None, (x.strip() for x in text.split(","))):
            if name in aliases:
                picked.update(aliases[name])
            elif name in choices:
                picked.add(name)
            else:
                raise argparse.ArgumentTypeError(
                    f"unknown value {name!r} (one of {', '.join(list(choices) + list(aliases))})")
        if not picked:
            raise argparse.ArgumentTypeError("an empty list")
        return [c for c in choices if c in picked]

    return parse


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--imgfs", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--image", choices=sorted(images.VERSIONS), default="bookworm")
    parser.add_argument("--networks", default="loopback,wan")
    parser.add_argument("--wan-formats", default="estargz,zstdchunked")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS),
                        type=choice_list(ROW_GROUPS, ROW_ALIASES),
                        help="row groups to measure, a comma list of "
                        f"{', '.join(ROW_GROUPS)} (cold: both cold groups); default all")
    parser.add_argument("--formats", default=",".join(FORMATS), type=choice_list(FORMATS),
                        help=f"formats to measure, a comma list of {', '.join(FORMATS)}; "
                        "default all")
    parser.add_argument("--wan-rtt-ms", type=float, default=20.0)
    parser.add_argument("--wan-mbit", type=float, default=100.0)
    parser.add_argument("--build-only", action="store_true",
                        help="build and cache the image, measure nothing")
    args = parser.parse_args()

    def terminate(*_):
        print("scripts/bench: interrupted; unmounting and stopping what it started",
              file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(args)
    try:
        if args.build_only:
            bench.prepare_image()
        else:
            bench.main()
    except CommandError as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
