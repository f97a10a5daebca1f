#!/usr/bin/python3
"""Writes layer 2 of the imgfs "layered" test image as an uncompressed tar.

umoci repack only writes per-file whiteouts, so this layer is written by hand to hold what a
real image builder (docker, buildah) produces and what imgfs must merge correctly:

  data/.wh.remove-me            whiteout of a file from layer 1
  etc/replaced/.wh..wh..opq     opaque directory: layer 1's etc/replaced/* disappears
  data/hardlink-{a,b}           a hard link inside this layer
  data/link-to-lower            a hard link to data/keep, a file of layer 1
  links/{relative,absolute,dangling}  symlinks
  deep/<...>                    a path longer than 100 bytes (needs a PAX path record)
  bin/setuid-tool               mode 04755
  etc/xattr-file                user.imgfs.test xattr (SCHILY.xattr), plus an empty-valued
                                SCHILY.xattr.user.imgfs.empty record: POSIX pax says a
                                zero-length value deletes the keyword, so the file must NOT
                                have that xattr (Go's archive/tar, hence umoci and docker,
                                drop it)
  big/blob.bin                  17 MiB: 12 MiB random then 5 MiB of repetitive text
  etc/nsec-file                 PAX mtime with nanoseconds
  etc/owned                     uid 1234, gid 5678

Usage: make_layer2.py OUT.tar [--no-link-to-lower]

--no-link-to-lower leaves data/link-to-lower out: podman (containers/storage) extracts each
layer on its own and cannot apply a hard link into a lower layer, so the podman tests use the
image without it.
"""

import io
import random
import sys
import tarfile

MTIME = 1600000000


def main():
    out = sys.argv[1]
    rng = random.Random(20240501)
    tar = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)

    def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, linkname="",
            pax=None, mtime=MTIME):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = mtime
        info.linkname = linkname
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        if pax:
            info.pax_headers = dict(pax)
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

    add("data/", tarfile.DIRTYPE, mode=0o755)
    add("data/.wh.remove-me")
    add("etc/", tarfile.DIRTYPE, mode=0o755)
    add("etc/replaced/", tarfile.DIRTYPE, mode=0o750, mtime=MTIME + 5)
    add("etc/replaced/.wh..wh..opq")
    add("etc/replaced/only-in-layer2", data=b"layer 2 owns this directory now\n")
    add("data/hardlink-a", data=b"one inode, two names\n", mode=0o640)
    add("data/hardlink-b", tarfile.LNKTYPE, linkname="data/hardlink-a")
    if "--no-link-to-lower" not in sys.argv[2:]:
        add("data/link-to-lower", tarfile.LNKTYPE, linkname="data/keep")
    add("links/", tarfile.DIRTYPE, mode=0o755)
    add("links/relative", tarfile.SYMTYPE, linkname="../etc/hostname", mode=0o777)
    add("links/absolute", tarfile.SYMTYPE, linkname="/etc/hostname", mode=0o777)
    add("links/dangling", tarfile.SYMTYPE, linkname="does/not/exist", mode=0o777)
    deep_dir = "deep/" + "d" * 70 + "/"
    add("deep/", tarfile.DIRTYPE, mode=0o755)
    add(deep_dir, tarfile.DIRTYPE, mode=0o755)
    add(deep_dir + "f" * 80 + ".txt", data=b"a path longer than one hundred bytes\n")
    add("bin/", tarfile.DIRTYPE, mode=0o755)
    add("bin/setuid-tool", data=b"#!/bin/sh\necho setuid\n", mode=0o4755)
    add("etc/xattr-file", data=b"has xattrs\n",
        pax={"SCHILY.xattr.user.imgfs.test": "hello xattr",
             "SCHILY.xattr.user.imgfs.empty": ""})
    big = rng.randbytes(12 << 20) + (b"imgfs compressible line of text 0123456789\n" * 200000)[:5 << 20]
    add("big/", tarfile.DIRTYPE, mode=0o755)
    add("big/blob.bin", data=big)
    add("etc/nsec-file", data=b"nanoseconds\n", pax={"mtime": "1600000000.123456789"})
    add("etc/owned", data=b"owned by 1234:5678\n", uid=1234, gid=5678, mode=0o600)
    tar.close()


if __name__ == "__main__":
    main()
