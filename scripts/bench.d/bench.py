#!/usr/bin/python3
"""The driver of scripts/bench: builds one image, pushes it in three formats, and measures
imgfs against the alternative a user would run, each pair in the same run.

scripts/bench prepares everything this needs (dependencies, the imgfs binary, an empty work
directory it removes afterwards) and is the way to run it. Everything this starts -- the
registry, the counting proxy, containerd, imgfs daemons and their mounts -- lives under the
work directory and is stopped in `finally`, also on SIGTERM; scripts/bench's trap catches
whatever a SIGKILL would leave.

Scenarios, per layer format (plain gzip OCI, eStargz, zstd:chunked):
  1. one file, cold:     imgfs mount (empty cache, --prefetch none) + cat of one small file
                         vs skopeo copy docker://... oci:DIR + umoci unpack + cat
  2. whole image, cold:  imgfs mount (empty cache, default prefetch, then again with
                         --prefetch all) + reading every file (tar to a pipe)
                         vs skopeo copy + umoci unpack + reading every file
  3. warm mount:         imgfs mount with the cache of (2), registry stopped, + cat one file
                         vs umoci unpack from the local OCI layout of (2)
  4. sequential read:    a 64 MiB file through a warm mount vs cat from the unpacked tree,
                         the page cache dropped before each read when the kernel allows it
  5. peak RSS:           the imgfs daemon's VmHWM during (2) vs skopeo's ru_maxrss
Registry-side bytes are what the counting proxy (tests/support/blob_proxy.py) sent;
every tool, imgfs included, talks to the registry through it. Where umoci cannot unpack a
format as pulled (zstd layers, umoci < 0.4.8) the alternative is skopeo copy recompressing to
gzip + umoci unpack, and the report says so.

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

MIB = 1 << 20
FORMATS = ("gzip", "estargz", "zstdchunked")
SMALL_FILE = "app/etc/settings.conf"
BIG_FILE = "opt/big/blob64.bin"
BIG_SIZE = 64 * MIB
SCENARIO_ORDER = ["one file, cold", "whole image, cold", "whole image, cold, --prefetch all",
                  "warm mount + one file", "sequential read 64 MiB, warm"]
REPO = "bench/img"


def log(msg):
    print(f"  {msg}", flush=True)


class CommandError(Exception):
    pass


class Bench:
    def __init__(self, args):
        self.root = args.root
        self.imgfs = args.imgfs
        self.work = args.work
        self.json_path = args.json
        self.repeat = max(1, args.repeat)
        self.logs = self.mkdir("logs")
        self.background = []  # (name, Popen) stopped in reverse order by close()
        self.mounts = {}  # mount point -> daemon pid (or None)
        self.results = []
        self.notes = []
        self.expected = {}  # relative path -> sha256 of the content written into the image
        self.drop_caches_ok = None
        self.command_count = 0

    # ---- processes ----------------------------------------------------------------------

    def mkdir(self, *parts):
        path = os.path.join(self.work, *parts)
        os.makedirs(path, exist_ok=True)
        return path

    def run(self, argv, *, stdout_path=None, timeout=600, env=None, cwd=None):
        """Runs argv to completion; returns (wall seconds, peak RSS in KiB).

        The RSS comes from wait4()'s rusage, which covers the process and the children it
        waited for. Fails with CommandError (naming the log) when the command fails.
        """
        self.command_count += 1
        name = os.path.basename(argv[0]) if argv[0] != "/bin/bash" else "sh"
        err_path = os.path.join(self.logs, f"{self.command_count:03d}-{name}.err")
        out = open(stdout_path or os.devnull, "wb")
        err = open(err_path, "wb")
        try:
            start = time.perf_counter()
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env, cwd=cwd)
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:  # SIGTERM: the command must not outlive the cleanup
                proc.kill()
                os.waitpid(proc.pid, 0)
                raise
            finally:
                timer.cancel()
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            out.close()
            err.close()
        if proc.returncode != 0:
            with open(err_path, errors="replace") as f:
                tail = f.read()[-3000:]
            raise CommandError(f"{' '.join(argv)} failed (exit {proc.returncode}, "
                               f"timeout {timeout} s):\n{tail}")
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

    # ---- registry, proxy, containerd -----------------------------------------------------

    def start_registry(self):
        port = free_port()
        self.registry = f"127.0.0.1:{port}"
        storage = self.mkdir("registry")
        config = os.path.join(self.work, "registry.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    f"    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
                    "  maintenance:\n    uploadpurging:\n      enabled: false\n"
                    f"http:\n  addr: {self.registry}\n  secret: imgfs-bench\n")
        env = dict(os.environ, OTEL_SDK_DISABLED="true")
        proc = self.start_background("registry", ["/usr/bin/docker-registry", "serve", config],
                                     env=env)
        wait_until(lambda: http_ok(f"http://{self.registry}/v2/"), proc, 20,
                   f"docker-registry on {self.registry} (log: {self.logs}/registry.log)")

    def start_proxy(self):
        self.proxy_log = os.path.join(self.work, "proxy-requests.jsonl")
        port_file = os.path.join(self.work, "proxy.port")
        registry_port = self.registry.split(":")[1]
        proc = self.start_background(
            "proxy", ["/usr/bin/python3", os.path.join(self.root, "tests", "support",
                                                        "blob_proxy.py"),
                      "--upstream-port", registry_port, "--log", self.proxy_log,
                      "--port-file", port_file])

        def ready():
            try:
                with open(port_file) as f:
                    self.proxy = f"127.0.0.1:{int(f.read())}"
            except (OSError, ValueError):
                return False
            return http_ok(f"http://{self.proxy}/v2/")

        wait_until(ready, proc, 20, "the counting proxy (tests/support/blob_proxy.py)")

    def proxy_mark(self):
        return len(self.proxy_lines())

    def proxy_lines(self):
        try:
            with open(self.proxy_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def proxy_bytes(self, mark):
        # The proxy logs a request after its last byte went out; give it a moment.
        time.sleep(0.3)
        lines = self.proxy_lines()[mark:]
        return sum(int(e.get("bytes", 0)) for e in lines), len(lines)

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
        self.run(ctr + ["content", "fetch", "--plain-http", source])
        for kind in ("estargz", "zstdchunked"):
            target = f"{self.registry}/{REPO}:{kind}"
            seconds, _ = self.run(ctr + ["image", "convert", f"--{kind}", "--oci", source,
                                         target])
            self.run(ctr + ["image", "push", "--plain-http", target])
            log(f"converted to {kind} with ctr-remote in {seconds:.1f} s and pushed")
        self.stop_background("containerd")

    def layer_sizes(self, fmt):
        accept = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.oci.image.index.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json"])
        manifest = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{fmt}", accept)
        if "manifests" in manifest:
            digest = manifest["manifests"][0]["digest"]
            manifest = http_json(f"http://{self.registry}/v2/{REPO}/manifests/{digest}", accept)
        return [(layer["mediaType"], int(layer["size"])) for layer in manifest["layers"]]

    # ---- the image ------------------------------------------------------------------------

    def build_image(self):
        """Three layers, ~120 MiB: text files, random files of mixed sizes, a 64 MiB file."""
        rng = random.Random(20240601)
        layout = os.path.join(self.work, "src-oci")
        bundle = os.path.join(self.work, "src-bundle")
        image = f"{layout}:bench"
        self.run(["umoci", "init", "--layout", layout])
        self.run(["umoci", "new", "--image", image])
        self.run(["umoci", "unpack", "--image", image, bundle])
        rootfs = os.path.join(bundle, "rootfs")

        def write(rel, data):
            path = os.path.join(rootfs, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
            self.expected[rel] = hashlib.sha256(data).hexdigest()

        letters = "abcdefghijklmnopqrstuvwxyz"
        words = ["".join(rng.choices(letters, k=rng.randint(2, 11))) for _ in range(3000)]

        def text(size):
            out = []
            length = 0
            while length < size:
                line = " ".join(rng.choices(words, k=rng.randint(4, 14))) + "\n"
                out.append(line)
                length += len(line)
            return "".join(out).encode()[:size]

        counts = {"text": 0, "random": 0}
        total = 0
        # Layer 1: documentation-like text, compressible.
        for pkg in range(600):
            for name in ("README", "changelog", "copyright"):
                size = int(rng.lognormvariate(8.6, 0.9)) + 64
                write(f"usr/share/doc/pkg{pkg:03d}/{name}", text(size))
                counts["text"] += 1
                total += size
        write("etc/os-release", b'NAME="imgfs bench"\nID=imgfs-bench\n')
        self.run(["umoci", "repack", "--refresh-bundle", "--image", image, bundle])
        # Layer 2: random (incompressible) files from 512 B to 6 MiB, 40 MiB in all.
        layer2 = 0
        i = 0
        while layer2 < 40 * MIB:
            size = min(int(2 ** rng.uniform(9, 22.6)), 40 * MIB - layer2)
            write(f"srv/data/d{i % 16:02d}/file{i:04d}.bin", rng.randbytes(size))
            layer2 += size
            i += 1
        counts["random"] += i
        total += layer2
        self.run(["umoci", "repack", "--refresh-bundle", "--image", image, bundle])
        # Layer 3: the 64 MiB file and the small file that scenarios 1 and 3 read.
        write(BIG_FILE, rng.randbytes(BIG_SIZE))
        write(SMALL_FILE, text(900))
        for n in range(20):
            write(f"app/lib/module{n:02d}.txt", text(rng.randint(200, 20000)))
            counts["text"] += 1
        counts["random"] += 1
        counts["text"] += 1
        total += BIG_SIZE
        self.run(["umoci", "repack", "--refresh-bundle", "--image", image, bundle])
        shutil.rmtree(bundle)
        self.image_info = {"files": len(self.expected), "text_files": counts["text"],
                           "random_files": counts["random"], "content_bytes": total}
        self.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{image}",
                  f"docker://{self.registry}/{REPO}:gzip"])

    # ---- imgfs ------------------------------------------------------------------------------

    def mount(self, fmt, cache, mnt, extra=()):
        os.makedirs(mnt, exist_ok=True)
        ref = f"{self.proxy}/{REPO}:{fmt}"
        seconds, _ = self.run([self.imgfs, "mount", "--cache", cache, *extra, ref, mnt],
                              timeout=300)
        self.mounts[mnt] = daemon_pid(mnt)
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
            digest = hashlib.file_digest(f, "sha256").hexdigest() if hasattr(
                hashlib, "file_digest") else sha256_stream(f)
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
                self.notes.append("echo 3 > /proc/sys/vm/drop_caches was refused: sequential "
                                  "reads ran with a warm page cache on both sides")

    # ---- results ------------------------------------------------------------------------

    def add(self, scenario, fmt, metric, unit, imgfs_value, alt_value, alt_what, **detail):
        ratio = imgfs_value / alt_value if alt_value else None
        self.results.append({"scenario": scenario, "format": fmt, "metric": metric,
                             "unit": unit, "imgfs": imgfs_value, "alternative": alt_value,
                             "alternative_is": alt_what, "ratio": ratio, "detail": detail})

    # ---- the scenarios ----------------------------------------------------------------------

    def cold(self, fmt):
        """Scenarios 1, 2 and 5 for one format; leaves cache-<fmt> and oci-<fmt> behind."""
        mnt = os.path.join(self.work, "mnt")
        small = os.path.join(mnt, SMALL_FILE)

        # 1. imgfs: one small file.
        mark = self.proxy_mark()
        t_mount = self.mount(fmt, self.mkdir(f"cache-one-{fmt}"), mnt, ["--prefetch", "none"])
        t_cat, _ = self.run(["cat", small])
        one_rss = vm_hwm(self.mounts[mnt])
        self.check_file(small, SMALL_FILE)
        self.unmount(mnt)
        one_bytes, one_requests = self.proxy_bytes(mark)
        shutil.rmtree(os.path.join(self.work, f"cache-one-{fmt}"))

        # 2. imgfs: every file.
        mark = self.proxy_mark()
        w_mount = self.mount(fmt, self.mkdir(f"cache-{fmt}"), mnt)
        w_read, _ = self.shell(f"tar -C {mnt} -cf - . | cat >/dev/null")
        whole_rss = vm_hwm(self.mounts[mnt])
        self.unmount(mnt)
        whole_bytes, whole_requests = self.proxy_bytes(mark)

        # 2b. imgfs: every file, with the whole image fetched in the background as well.
        mark = self.proxy_mark()
        a_mount = self.mount(fmt, self.mkdir(f"cache-all-{fmt}"), mnt, ["--prefetch", "all"])
        a_read, _ = self.shell(f"tar -C {mnt} -cf - . | cat >/dev/null")
        all_rss = vm_hwm(self.mounts[mnt])
        self.unmount(mnt)
        all_bytes, all_requests = self.proxy_bytes(mark)
        shutil.rmtree(os.path.join(self.work, f"cache-all-{fmt}"))

        # The alternative: a full pull, an unpack, then the same reads.
        oci = os.path.join(self.work, f"oci-{fmt}")
        bundle = os.path.join(self.work, f"bundle-{fmt}")
        pull = ["skopeo", "copy", "--quiet", "--src-tls-verify=false"]
        source = f"docker://{self.proxy}/{REPO}:{fmt}"
        mark = self.proxy_mark()
        t_skopeo, skopeo_rss = self.run(pull + [source, f"oci:{oci}:bench"])
        skopeo_bytes, _ = self.proxy_bytes(mark)
        alt_pull = "skopeo copy + umoci unpack"
        try:
            t_unpack, umoci_rss = self.run(["umoci", "unpack", "--image", f"{oci}:bench",
                                            bundle])
        except CommandError as e:
            # umoci before 0.4.8 knows no zstd layers: what a user of it has to do is let
            # skopeo recompress them to gzip on the way in.
            self.notes.append(f"umoci cannot unpack the {fmt} image as pulled "
                              f"({str(e).strip().splitlines()[-1].strip()}); its alternative "
                              "is skopeo copy --dest-compress --dest-compress-format gzip")
            shutil.rmtree(oci)
            shutil.rmtree(bundle, ignore_errors=True)
            mark = self.proxy_mark()
            t_skopeo, skopeo_rss = self.run(pull + ["--dest-compress",
                                                    "--dest-compress-format", "gzip",
                                                    source, f"oci:{oci}:bench"])
            skopeo_bytes, _ = self.proxy_bytes(mark)
            t_unpack, umoci_rss = self.run(["umoci", "unpack", "--image", f"{oci}:bench",
                                            bundle])
            alt_pull = "skopeo copy (to gzip) + umoci unpack"
        alt_small = os.path.join(bundle, "rootfs", SMALL_FILE)
        t_alt_cat, _ = self.run(["cat", alt_small])
        self.check_file(alt_small, SMALL_FILE)
        t_alt_read, _ = self.shell(f"tar -C {bundle}/rootfs -cf - . | cat >/dev/null")
        self.bundles[fmt] = bundle

        self.add("one file, cold", fmt, "time", "s", t_mount + t_cat,
                 t_skopeo + t_unpack + t_alt_cat, alt_pull + " + cat",
                 imgfs_mount_s=t_mount, imgfs_cat_s=t_cat, skopeo_copy_s=t_skopeo,
                 umoci_unpack_s=t_unpack, cat_s=t_alt_cat)
        self.add("one file, cold", fmt, "registry bytes", "B", one_bytes, skopeo_bytes,
                 "skopeo copy", imgfs_requests=one_requests, imgfs_daemon_vmhwm_kib=one_rss)
        self.add("whole image, cold", fmt, "time", "s", w_mount + w_read,
                 t_skopeo + t_unpack + t_alt_read, alt_pull + " + read all",
                 imgfs_mount_s=w_mount, imgfs_read_all_s=w_read, skopeo_copy_s=t_skopeo,
                 umoci_unpack_s=t_unpack, read_all_s=t_alt_read)
        self.add("whole image, cold", fmt, "registry bytes", "B", whole_bytes, skopeo_bytes,
                 "skopeo copy", imgfs_requests=whole_requests)
        self.add("whole image, cold", fmt, "peak RSS", "KiB", whole_rss, skopeo_rss,
                 "skopeo copy", umoci_unpack_kib=umoci_rss)
        self.add("whole image, cold, --prefetch all", fmt, "time", "s", a_mount + a_read,
                 t_skopeo + t_unpack + t_alt_read, alt_pull + " + read all",
                 imgfs_mount_s=a_mount, imgfs_read_all_s=a_read)
        self.add("whole image, cold, --prefetch all", fmt, "registry bytes", "B", all_bytes,
                 skopeo_bytes, "skopeo copy", imgfs_requests=all_requests,
                 imgfs_daemon_vmhwm_kib=all_rss)
        log(f"{fmt}: one file {t_mount + t_cat:.2f} s / {one_bytes / MIB:.2f} MiB, "
            f"whole image {w_mount + w_read:.2f} s / {whole_bytes / MIB:.1f} MiB "
            f"({a_mount + a_read:.2f} s / {all_bytes / MIB:.1f} MiB with --prefetch all); "
            f"skopeo copy {t_skopeo:.2f} s / {skopeo_bytes / MIB:.1f} MiB, "
            f"umoci unpack {t_unpack:.2f} s")

    def warm(self, fmt):
        """Scenario 3: the registry is down, the cache of scenario 2 is full."""
        mnt = os.path.join(self.work, "mnt")
        cache = os.path.join(self.work, f"cache-{fmt}")
        times, mounts = [], []
        for _ in range(self.repeat):
            t_mount = self.mount(fmt, cache, mnt)
            t_cat, _ = self.run(["cat", os.path.join(mnt, SMALL_FILE)])
            self.check_file(os.path.join(mnt, SMALL_FILE), SMALL_FILE)
            self.unmount(mnt)
            times.append(t_mount + t_cat)
            mounts.append(t_mount)
        oci = os.path.join(self.work, f"oci-{fmt}")
        unpacks = []
        for n in range(self.repeat):
            target = os.path.join(self.work, f"warm-bundle-{fmt}-{n}")
            seconds, _ = self.run(["umoci", "unpack", "--image", f"{oci}:bench", target])
            unpacks.append(seconds)
            shutil.rmtree(target)
        alt = statistics.median(unpacks)
        self.add("warm mount + one file", fmt, "time", "s", statistics.median(times), alt,
                 "umoci unpack from the local OCI layout", imgfs_runs_s=times,
                 imgfs_mount_runs_s=mounts, umoci_unpack_runs_s=unpacks)
        log(f"{fmt}: warm mount + cat {statistics.median(times) * 1000:.0f} ms, "
            f"umoci unpack {alt:.2f} s")

    def throughput(self, fmt):
        """Scenario 4: 64 MiB sequentially, warm imgfs cache vs the unpacked tree."""
        mnt = os.path.join(self.work, "mnt")
        cache = os.path.join(self.work, f"cache-{fmt}")
        imgfs_runs, alt_runs = [], []
        for _ in range(self.repeat):
            self.mount(fmt, cache, mnt)
            self.drop_caches()
            seconds, _ = self.run(["cat", os.path.join(mnt, BIG_FILE)])
            imgfs_runs.append(seconds)
            self.unmount(mnt)
        self.mount(fmt, cache, mnt)
        self.check_file(os.path.join(mnt, BIG_FILE), BIG_FILE)
        self.unmount(mnt)
        bundle = self.bundles[fmt]
        for _ in range(self.repeat):
            self.drop_caches()
            seconds, _ = self.run(["cat", os.path.join(bundle, "rootfs", BIG_FILE)])
            alt_runs.append(seconds)
        t_imgfs = statistics.median(imgfs_runs)
        t_alt = statistics.median(alt_runs)
        self.add("sequential read 64 MiB, warm", fmt, "time", "s", t_imgfs, t_alt,
                 "cat from the unpacked tree", imgfs_mib_s=64 / t_imgfs, cat_mib_s=64 / t_alt,
                 imgfs_runs_s=imgfs_runs, cat_runs_s=alt_runs,
                 page_cache_dropped=self.drop_caches_ok)
        log(f"{fmt}: 64 MiB through imgfs {64 / t_imgfs:.0f} MiB/s, cat {64 / t_alt:.0f} MiB/s")

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
        for tool, argv in (("source_commit", ["git", "-C", self.root, "rev-parse", "--short",
                                              "HEAD"]),
                           ("skopeo", ["skopeo", "--version"]),
                           ("umoci", ["umoci", "--version"])):
            try:
                info[tool] = subprocess.run(argv, capture_output=True, text=True,
                                            timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                pass
        return info

    def report(self, machine, started):
        machine["loadavg_1m_end"] = os.getloadavg()[0]
        # Grouped by scenario, in the order of the docstring, formats in FORMATS order.
        order = []
        for r in self.results:
            if r["scenario"] not in order:
                order.append(r["scenario"])
        order.sort(key=lambda s: (SCENARIO_ORDER.index(s) if s in SCENARIO_ORDER else 99))
        self.results.sort(key=lambda r: (order.index(r["scenario"]),
                                         FORMATS.index(r["format"])))
        document = {"machine": machine, "image": self.image_info,
                    "duration_s": time.monotonic() - started, "results": self.results,
                    "notes": self.notes}
        with open(self.json_path, "w") as f:
            json.dump(document, f, indent=2)
            f.write("\n")
        print()
        print(format_table(self.results))
        for note in self.notes:
            print(f"note: {note}")
        print(f"\nmachine: {machine.get('cpus')} CPUs ({machine.get('cpu', '?')}), "
              f"load {machine['loadavg_1m']:.2f} at start, {machine['loadavg_1m_end']:.2f} "
              f"at end; ratio = imgfs / alternative (below 1: imgfs is faster or smaller)")
        print(f"JSON: {self.json_path}")

    def main(self):
        started = time.monotonic()
        machine = self.machine()
        self.bundles = {}
        print("-- registry, proxy and image", flush=True)
        self.start_registry()
        self.start_proxy()
        self.build_image()
        self.convert_with_containerd()
        self.image_info["layers"] = {fmt: self.layer_sizes(fmt) for fmt in FORMATS}
        for fmt in FORMATS:
            sizes = self.image_info["layers"][fmt]
            log(f"{fmt}: {len(sizes)} layers, {sum(s for _, s in sizes) / MIB:.1f} MiB "
                f"compressed")
        print("-- cold: one file, whole image, peak RSS", flush=True)
        for fmt in FORMATS:
            self.cold(fmt)
        print("-- registry stopped; warm mounts", flush=True)
        self.stop_background("proxy")
        self.stop_background("registry")
        for fmt in FORMATS:
            self.warm(fmt)
        print("-- sequential read of a 64 MiB file", flush=True)
        for fmt in FORMATS:
            self.throughput(fmt)
        self.report(machine, started)


# ---- helpers ------------------------------------------------------------------------------


def format_table(results):
    def value(v, unit):
        if v is None:
            return "n/a"
        if unit == "s":
            return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"
        if unit == "B":
            return f"{v / MIB:.2f} MiB" if v < 10 * MIB else f"{v / MIB:.1f} MiB"
        if unit == "KiB":
            return f"{v / 1024:.1f} MiB"
        return str(v)

    rows = [("scenario", "format", "metric", "imgfs", "alternative", "ratio", "alternative is")]
    for r in results:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.3f}"
        imgfs = value(r["imgfs"], r["unit"])
        alt = value(r["alternative"], r["unit"])
        if r["scenario"].startswith("sequential"):
            imgfs += f" ({r['detail']['imgfs_mib_s']:.0f} MiB/s)"
            alt += f" ({r['detail']['cat_mib_s']:.0f} MiB/s)"
        rows.append((r["scenario"], r["format"], r["metric"], imgfs, alt, ratio,
                     r["alternative_is"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--imgfs", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    def terminate(*_):
        print("scripts/bench: interrupted; unmounting and stopping what it started",
              file=sys.stderr, flush=True)
        sys.exit(143)

    signal.signal(signal.SIGTERM, terminate)
    bench = Bench(args)
    try:
        bench.main()
    except CommandError as e:
        print(f"scripts/bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
