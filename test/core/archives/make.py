#!/usr/bin/env python3
"""Makes the archives that test/core/archives.test.ts reads, with tools other than tunekit's own:
Python's tarfile (GNU and pax headers, a symbolic link, a path that climbs out) and the zstd command
(real compressed blocks, level 19). Run from this folder: python3 make.py (needs zstd on PATH)."""
import gzip, hashlib, io, json, subprocess, tarfile

def data_file():
    # 200 KB that compresses: a repeating pattern with a slow drift.
    return bytes(((i % 997) * 31 + i // 50_000) % 256 for i in range(200_000))

LONG = "nested/" + "a-rather-long-folder-name-for-a-checkpoint/" * 3 + "adapter_model.safetensors"
FILES = {"hello.txt": b"hello\n", "data.bin": data_file(), LONG: b"long name\n"}

def archive(fmt, files, extra=None):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
        if extra:
            extra(tar)
    return out.getvalue()

def write(name, data):
    with open(name, "wb") as f:
        f.write(data)

gnu = archive(tarfile.GNU_FORMAT, FILES)
pax = archive(tarfile.PAX_FORMAT, FILES)
write("gnu.tar.zst", subprocess.run(["zstd", "-19", "-q", "-c"], input=gnu, capture_output=True, check=True).stdout)
write("pax.tar.gz", gzip.compress(pax, mtime=0))
write("plain.tar", archive(tarfile.USTAR_FORMAT, {"hello.txt": b"hello\n"}))

def symlink(tar):
    info = tarfile.TarInfo("link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)
write("symlink.tar", archive(tarfile.USTAR_FORMAT, {"hello.txt": b"hello\n"}, symlink))
write("climbs-out.tar", archive(tarfile.USTAR_FORMAT, {"../outside.txt": b"no\n"}))

with open("expected.json", "w") as f:
    json.dump({name: hashlib.sha256(content).hexdigest() for name, content in FILES.items()}, f, indent=2)
    f.write("\n")
