#!/usr/bin/env python3
"""Makes DEST hold what `docker build SOURCE` sends as its context: SOURCE's files minus what
SOURCE/.dockerignore excludes. Files already in DEST with the same size and mtime are left
alone (so cargo's fingerprints stay valid from one run to the next); others are copied with
their mode and mtime, and anything else in DEST is removed. Prints the context's size.

Usage: scripts/docker-context.py SOURCE DEST

.dockerignore as Docker reads it: one pattern a line, `#` comments, paths relative to the
context root, `*` and `?` within one path element, `**` across any number of them, `!`
re-includes, the last matching line wins, and a pattern that matches a folder excludes
everything in it.
"""

import os
import re
import shutil
import sys


def pattern_regex(pattern):
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"  # any number of folders, none too
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i)
            if end < 0:
                sys.exit(f"docker-context: bad pattern {pattern!r}")
            out += pattern[i : end + 1]  # Go's classes: [^...] negates, as in Python
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def rules(source):
    found = []
    try:
        with open(os.path.join(source, ".dockerignore"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return found
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        found.append((pattern_regex(line), keep))
    return found


def excluded(path, found):
    """`path` or one of the folders above it matches, and the last matching line excludes."""
    parts = path.split("/")
    verdict = False
    for regex, keep in found:
        if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            verdict = not keep
    return verdict


def main(source, dest):
    found = rules(source)
    can_prune = not any(keep for _, keep in found)
    wanted, total = set(), 0
    for top, dirs, files in os.walk(source):
        rel_top = os.path.relpath(top, source)
        rel = lambda name: name if rel_top == "." else f"{rel_top}/{name}"
        if can_prune:
            dirs[:] = [d for d in dirs if not excluded(rel(d), found)]
        for name in files:
            path = rel(name)
            if excluded(path, found):
                continue
            src, dst = os.path.join(source, path), os.path.join(dest, path)
            st = os.lstat(src)
            wanted.add(path)
            total += st.st_size
            try:
                dt = os.lstat(dst)
                if (dt.st_size, int(dt.st_mtime)) == (st.st_size, int(st.st_mtime)):
                    continue
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
    for top, dirs, files in os.walk(dest, topdown=False):
        for name in files:
            path = os.path.relpath(os.path.join(top, name), dest)
            if path not in wanted:
                os.remove(os.path.join(top, name))
        if top != dest and not os.listdir(top):
            os.rmdir(top)
    print(f"{len(wanted)} files, {total // 1024} KiB")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: docker-context.py SOURCE DEST")
    main(sys.argv[1], sys.argv[2])
