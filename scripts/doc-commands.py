#!/usr/bin/env python3
"""Runs the commands that Markdown pages show, as pasted, and checks their links.

Usage: doc-commands.py [--replace OLD=NEW]... FILE...   (run from the repository's root)

- A ```sh block runs as one bash script (`set -euo pipefail`); it must exit 0.
- The `$ ` lines of a ```console block run one after the other in one shell; each must
  exit 0, a shown status line (`HTTP/1.1 404 Not Found`) must be the one answered, and a
  shown JSON body must have the same keys (and app_id, log_type, status, error code).
- The comment line just before a block may say:
    <!-- not run: WHY -->       skip it (listed with WHY)
    <!-- run for N s -->        run it for N seconds: it must still run then, having printed
    <!-- check: COMMAND -->     run COMMAND FILE on the block written to FILE
    <!-- excerpt of PATH -->    the block must be a part of the file PATH
- Every relative link must name a file of the repository, and a heading of it after `#`;
  no page may name CONTRACT.md, which is not in the repository.
--replace rewrites the commands' text first (the service's address, the pid file).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(not run|run for|check|excerpt of)\b:?\s*(.*?)\s*-->$")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
ROOT = os.getcwd()
failures, skipped, ran = [], [], 0


def blocks(path):
    """(line number, language, text, directive) of each fenced block, and the prose."""
    lines = open(path, encoding="utf-8").read().split("\n")
    found, prose, i, last = [], [], 0, ""
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            prose.append(lines[i])
            if lines[i].strip():
                last = lines[i].strip()
            i += 1
            continue
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        d = DIRECTIVE.match(last)
        found.append((start, m.group(1), "\n".join(body), (d.group(1), d.group(2)) if d else None))
        i, last = i + 1, ""
    return found, "\n".join(prose)


def slug(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def check_links(page, prose):
    path = os.path.abspath(page)
    if "CONTRACT.md" in prose:
        failures.append(f"{page}: names CONTRACT.md, which is not in the repository")
    for target in LINK.findall(prose):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not full.startswith(ROOT + os.sep):
            failures.append(f"{page}: {target} is outside the repository")
        elif not os.path.exists(full):
            failures.append(f"{page}: {target}: no such file")
        elif anchor and full.endswith(".md"):
            heads = [slug(h) for h in re.findall(r"^#+ (.*)$", open(full).read(), re.M)]
            if anchor not in heads:
                failures.append(f"{page}: {target}: no such heading")


def run(script, seconds):
    """(exit status, output) of `bash -c script`; (None, output so far) after `seconds`,
    its whole process group then stopped."""
    p = subprocess.Popen(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, errors="replace", start_new_session=True)
    try:
        out = p.communicate(timeout=seconds)[0]
        return p.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        return None, p.communicate()[0]


def skeleton(text):
    """What must match in a JSON body: its keys, a few values, the 422 types."""
    try:
        doc = json.loads(text)
    except ValueError:
        return ("not JSON", text[:200])
    if not isinstance(doc, dict):
        return ("not an object",)
    error = doc.get("error") or {}
    return (sorted(doc), [doc.get(k) for k in ("app_id", "log_type", "status", "success")],
            error.get("code"), [d.get("type") for d in doc.get("detail", [])])


def split_answer(text):
    text = text.replace("\r\n", "\n")
    head, _, body = text.partition("\n\n") if text.startswith("HTTP/") else ("", "", text)
    return head.split("\n")[0], body.strip()


def console(where, text, tmp):
    global ran
    commands, expected = [], []
    for line in text.split("\n"):
        if line.startswith("$ "):
            commands.append(line[2:])
            expected.append([])
        elif commands:
            expected[-1].append(line)
    script = "".join(f"{{ {c}\n}} >{tmp}/out{k} 2>&1; echo $? >{tmp}/rc{k}\n" for k, c in enumerate(commands))
    rc, out = run(script, 120)
    if rc is None:
        failures.append(f"{where}: timed out\n{out[-2000:]}")
        return
    for k, command in enumerate(commands):
        ran += 1
        actual = open(f"{tmp}/out{k}", errors="replace").read()
        code = int(open(f"{tmp}/rc{k}").read())
        want_status, want_body = split_answer("\n".join(expected[k]).strip())
        got_status, got_body = split_answer(actual)
        problem = None
        if code != 0:
            problem = f"exit status {code}"
        elif want_status and want_status != got_status:
            problem = f"answered {got_status!r}, the page shows {want_status!r}"
        elif want_body.startswith("{") and skeleton(want_body) != skeleton(got_body):
            problem = f"body {skeleton(got_body)}, the page shows {skeleton(want_body)}"
        if problem:
            failures.append(f"{where}: $ {command[:100]}\n  {problem}\n  {actual[:600]}")


def main(args):
    global ran
    replace, files = [], []
    while args:
        arg = args.pop(0)
        if arg == "--replace":
            old, _, new = args.pop(0).partition("=")
            replace.append((old, new))
        else:
            files.append(arg)
    tmp = tempfile.mkdtemp()
    for path in files:
        found, prose = blocks(path)
        check_links(path, prose)
        for line, lang, text, directive in found:
            where = f"{path}:{line}"
            for old, new in replace:
                text = text.replace(old, new)
            kind, arg = directive or (None, None)
            if kind == "not run":
                skipped.append(f"{where}: {arg}")
            elif kind == "excerpt of":
                ran += 1
                if text not in open(arg).read():
                    failures.append(f"{where}: not a part of {arg}")
            elif kind == "check":
                ran += 1
                file = os.path.join(tmp, f"block.{lang or 'txt'}")
                open(file, "w").write(text + "\n")
                rc, out = run(f"{arg} {file}", 60)
                if rc != 0:
                    failures.append(f"{where}: {arg} failed\n{out[-1500:]}")
            elif lang == "sh":
                ran += 1
                seconds = int(re.match(r"\d+", arg).group()) if kind == "run for" else 120
                rc, out = run("set -euo pipefail\n" + text, seconds)
                ok = (rc is None and out.strip()) if kind == "run for" else rc == 0
                if not ok:
                    failures.append(f"{where}: exit status {rc}\n{out[-1500:]}")
            elif lang == "console":
                console(where, text, tmp)
    for s in skipped:
        print(f"not run: {s}")
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    print(f"{ran} commands and checks run, {len(skipped)} blocks not run, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
