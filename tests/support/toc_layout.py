#!/usr/bin/python3
"""Prints where the chunks of an eStargz or zstd:chunked blob are (see toc_layout.h).

Reads the blob file given on the command line, finds its TOC from the footer exactly as the
formats define it (eStargz: the 51- or 47-byte gzip footer naming the TOC offset; zstd:chunked:
the skippable footer frame with offset, length, uncompressed length and type), decodes the TOC
(gzip + tar for eStargz, `zstd -d` for zstd:chunked) and prints one JSON object:

  {"format": "estargz"|"zstdchunked", "blob_size": N, "toc_offset": N,
   "files": {"path": [[offset, compressed_size, chunk_offset, chunk_size], ...]}}

A chunk's compressed size is its endOffset when the TOC has one, else the distance to the
next chunk that starts later in the blob (or to the TOC). Paths have no leading "./".
This is an independent reading of the format, so tests can hold imgfs to it.
"""

import io
import json
import re
import struct
import subprocess
import sys
import tarfile
import zlib

SKIPPABLE_MAGIC = 0x184D2A50


def estargz_toc(blob):
    for footer_size in (51, 47):
        if len(blob) < footer_size:
            continue
        footer = blob[-footer_size:]
        m = re.search(rb"([0-9a-f]{16})STARGZ", footer)
        if not m:
            continue
        toc_offset = int(m.group(1), 16)
        raw = blob[toc_offset:len(blob) - footer_size]
        out = bytearray()
        while raw:
            d = zlib.decompressobj(31)
            out += d.decompress(raw)
            raw = d.unused_data
        with tarfile.open(fileobj=io.BytesIO(bytes(out)), mode="r:") as tar:
            member = tar.getmember("stargz.index.json")
            return toc_offset, json.load(tar.extractfile(member))
    return None


def zstd_chunked_toc(blob):
    for payload in (64, 40):
        frame = 8 + payload
        if len(blob) < frame:
            continue
        f = blob[-frame:]
        magic, size = struct.unpack("<II", f[:8])
        if magic != SKIPPABLE_MAGIC or size != payload or f[-8:] not in (b"GNUlInUx",
                                                                         b"GnUlInUx"):
            continue
        offset, length, _, kind = struct.unpack("<QQQQ", f[8:40])
        if kind != 1:
            sys.exit("zstd:chunked manifest type %d" % kind)
        data = subprocess.run(["zstd", "-d", "-c"], input=blob[offset:offset + length],
                              stdout=subprocess.PIPE, check=True).stdout
        return offset, json.loads(data)
    return None


def main():
    with open(sys.argv[1], "rb") as f:
        blob = f.read()
    found = zstd_chunked_toc(blob)
    fmt = "zstdchunked"
    if found is None:
        found = estargz_toc(blob)
        fmt = "estargz"
    if found is None:
        sys.exit("no eStargz or zstd:chunked footer at the end of " + sys.argv[1])
    toc_offset, toc = found

    starts = sorted({e["offset"] for e in toc.get("entries", []) if e.get("offset", 0) > 0})
    starts.append(toc_offset)

    def next_start(offset):
        lo, hi = 0, len(starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if starts[mid] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return starts[lo] if lo < len(starts) else toc_offset

    sizes = {e["name"]: e.get("size", 0) for e in toc.get("entries", [])
             if e.get("type") == "reg"}
    files = {}
    for e in toc.get("entries", []):
        if e.get("type") not in ("reg", "chunk") or e.get("offset", 0) <= 0:
            continue
        if e.get("type") == "reg" and e.get("size", 0) == 0:
            continue
        name = e["name"]
        size = sizes.get(name, 0)
        while name.startswith("./"):
            name = name[2:]
        name = name.lstrip("/")
        offset = e["offset"]
        end = e.get("endOffset") or next_start(offset)
        chunk_offset = e.get("chunkOffset", 0)
        chunk_size = e.get("chunkSize") or (size - chunk_offset)
        files.setdefault(name, []).append([offset, end - offset, chunk_offset, chunk_size])
    json.dump({"format": fmt, "blob_size": len(blob), "toc_offset": toc_offset,
               "files": files}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
