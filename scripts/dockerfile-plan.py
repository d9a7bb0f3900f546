#!/usr/bin/env python3
"""Reads a Dockerfile and prints, as bash assignments, what scripts/image-check.sh needs.

Usage: scripts/dockerfile-plan.py Dockerfile    (its output is meant for `eval`)

Printed (every value quoted with shlex.quote):
  builder_image, builder_cargo=(...)   the first stage's FROM and the `cargo ...` words of its RUN
  base_image                           the last stage's FROM (the runtime stage)
  nsteps, step_<i>=(KIND ARGS...)      the runtime stage's instructions, in order:
                                         RUN <shell command>         (shell form only)
                                         WORKDIR <path>
                                         COPY <from-stage or ""> <src>... <dst>
                                         ENV <name> <value>          (one step per variable)
                                         USER <user[:group]>
  expose=(...)                         the EXPOSE ports
  healthcheck=(...), hc_interval_ms, hc_timeout_ms, hc_start_period_ms, hc_retries
  entrypoint=(...), cmd=(...)          exec form, or ["/bin/sh", "-c", text] for the shell form

Anything this reader does not understand (an instruction it does not know in the runtime
stage, `$` in an ENV value, COPY flags other than --from, a HEALTHCHECK without CMD) is an
error, so a Dockerfile change that the check cannot follow fails the check instead of being
skipped.
"""

import json
import re
import shlex
import sys


def fail(message):
    sys.exit(f"dockerfile-plan: {message}")


def instructions(text):
    """(KEYWORD, arguments) pairs: continuation lines joined, comment lines dropped."""
    out, current = [], ""
    for line in text.splitlines():
        if re.match(r"\s*#", line) or (not current and not line.strip()):
            continue  # comments (also inside a continuation) and blank lines
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    if current.strip():
        fail("the file ends inside a continued line")
    return out


def exec_or_shell(args):
    if args.startswith("["):
        words = json.loads(args)
        if not all(isinstance(w, str) for w in words):
            fail(f"not a list of strings: {args}")
        return words
    return ["/bin/sh", "-c", args]


def milliseconds(value):
    total, rest = 0.0, value
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
        rest = rest.replace(number + unit, "", 1)
    if rest:
        fail(f"not a duration: {value}")
    return round(total * 1000)


def flags(args):
    """Leading --name=value flags, and the rest."""
    found = {}
    while args.startswith("--"):
        flag, _, args = args.partition(" ")
        name, _, value = flag[2:].partition("=")
        found[name] = value
        args = args.lstrip()
    return found, args


def main(path):
    with open(path, encoding="utf-8") as f:
        stages = []
        for keyword, args in instructions(f.read()):
            if keyword == "FROM":
                stages.append((args, []))
            elif not stages:
                if keyword != "ARG":
                    fail(f"{keyword} before the first FROM")
            else:
                stages[-1][1].append((keyword, args))
    if len(stages) < 2:
        fail("expected a build stage and a runtime stage")

    out = []

    def assign(name, value):
        if isinstance(value, list):
            out.append(f"{name}=({' '.join(shlex.quote(str(v)) for v in value)})")
        else:
            out.append(f"{name}={shlex.quote(str(value))}")

    builder_from, builder_steps = stages[0]
    assign("builder_image", builder_from.split()[0])
    cargo = []
    for keyword, args in builder_steps:
        if keyword == "RUN":
            _, command = flags(args)
            match = re.search(r"\bcargo build\b[^&;|]*", command)
            if match:
                cargo = shlex.split(match.group(0))
    if not cargo:
        fail("no `cargo build` in the build stage's RUN lines")
    assign("builder_cargo", cargo)

    base_from, steps = stages[-1]
    assign("base_image", base_from.split()[0])
    n, expose, healthcheck, entrypoint, cmd = 0, [], None, [], []
    for keyword, args in steps:
        step = None
        if keyword == "RUN":
            if args.startswith("[") or args.startswith("--"):
                fail(f"only the shell form of RUN, without flags, is understood: RUN {args}")
            step = ["RUN", args]
        elif keyword in ("WORKDIR", "USER"):
            step = [keyword, args]
        elif keyword == "COPY":
            found, rest = flags(args)
            if set(found) - {"from"}:
                fail(f"COPY flags other than --from are not understood: COPY {args}")
            words = exec_or_shell(rest) if rest.startswith("[") else shlex.split(rest)
            step = ["COPY", found.get("from", "")] + words
        elif keyword == "ENV":
            words = shlex.split(args)
            pairs = [w.partition("=") for w in words] if "=" in words[0] else [
                (words[0], "=", args.partition(" ")[2].strip())]
            for name, _, value in pairs:
                if "$" in value:
                    fail(f"ENV {name}: references ($) are not understood")
                assign(f"step_{n}", ["ENV", name, value])
                n += 1
        elif keyword == "EXPOSE":
            expose += [p.split("/")[0] for p in args.split()]
        elif keyword == "HEALTHCHECK":
            found, rest = flags(args)
            keyword2, _, command = rest.partition(" ")
            if keyword2.upper() != "CMD":
                fail(f"HEALTHCHECK without CMD: {args}")
            healthcheck = exec_or_shell(command.strip())
            assign("hc_interval_ms", milliseconds(found.pop("interval", "30s")))
            assign("hc_timeout_ms", milliseconds(found.pop("timeout", "30s")))
            assign("hc_start_period_ms", milliseconds(found.pop("start-period", "0s")))
            assign("hc_retries", int(found.pop("retries", "3")))
            found.pop("start-interval", None)
            if found:
                fail(f"HEALTHCHECK flags not understood: {sorted(found)}")
        elif keyword == "ENTRYPOINT":
            entrypoint = exec_or_shell(args)
        elif keyword == "CMD":
            cmd = exec_or_shell(args)
        elif keyword not in ("LABEL", "ARG"):
            fail(f"the runtime stage's {keyword} is not understood by this check")
        if step:
            assign(f"step_{n}", step)
            n += 1
    if healthcheck is None:
        fail("the runtime stage has no HEALTHCHECK")
    assign("nsteps", n)
    assign("expose", expose)
    assign("healthcheck", healthcheck)
    assign("entrypoint", entrypoint)
    assign("cmd", cmd)
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: dockerfile-plan.py Dockerfile")
    main(sys.argv[1])
