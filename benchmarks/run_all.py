"""Run every benchmarks/bench_*.py and write docs/performance.md (and its plots, docs/plots/).

Each script prints one Markdown section; this file adds the command and the machine.
Usage: python benchmarks/run_all.py [name ...]   (names without bench_ / .py to run a subset)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def _commit() -> str:
    """The checkout's commit, so a figure can be traced to the code it measured."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
            timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    return out.stdout.strip() or "an unknown commit"


def _markers(stem: str) -> tuple[str, str]:
    return f"<!-- {stem} -->", f"<!-- /{stem} -->"


def _wrap(stem: str, section: str) -> str:
    begin, end = _markers(stem)
    return f"{begin}\n{section.strip()}\n{end}\n"


def main() -> int:
    wanted = set(sys.argv[1:])
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if wanted:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    sections: list[tuple[str, str]] = []
    failed = 0
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = _commit()
    alone = (
        f"; alone on {when} at {commit}, `python benchmarks/run_all.py {' '.join(sorted(wanted))}`"
    )
    for script in scripts:
        print(f"== {script.name}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=1800
        )
        took = time.monotonic() - t0
        if proc.returncode != 0:
            failed += 1
            text = (
                f"## {script.stem}\n\nFAILED (exit {proc.returncode}):\n\n```\n"
                f"{proc.stderr[-2000:]}\n```\n"
            )
            sections.append((script.stem, text))
            print(proc.stderr[-2000:], file=sys.stderr)
        else:
            ran = f"_(ran in {took:.0f} s{alone if wanted else ''})_"
            sections.append((script.stem, proc.stdout.strip() + f"\n\n{ran}\n"))
            print(proc.stdout)
    header = (
        "# Performance\n\n"
        f"Produced by `make bench` (`python benchmarks/run_all.py`) on "
        f"{when} at {commit}.\n\n"
        f"Machine: {machine()}. All traffic on 127.0.0.1. Figures vary ±20-30 % between runs: "
        "compare ratios measured in one run (each table holds its references).\n\n"
        "Key figures as plots, drawn from this page's tables by `tools/bench_plots.py` at the "
        "end of the same run:\n\n"
        "![CPU against deployments](plots/engine-cpu.svg)\n"
        "![p99 lateness against deployments](plots/engine-lateness.svg)\n"
        "![Canary judge: time to abort against traffic](plots/judge-detection.svg)\n"
    )
    out = ROOT / "docs" / "performance.md"
    if wanted and out.exists():
        # A partial run replaces only its own scripts' sections, each between its markers
        # (a script may print several sections), and says when it ran alone.
        text = out.read_text()
        for stem, section in sections:
            begin, end = _markers(stem)
            start, stop = text.find(begin), text.find(end)
            if start >= 0 and stop > start:
                text = text[:start] + _wrap(stem, section) + text[stop + len(end) :]
            else:
                text += "\n" + _wrap(stem, section) + "\n"
        out.write_text(text)
    else:
        out.write_text(header + "\n" + "\n".join(_wrap(st, sec) for st, sec in sections) + "\n")
    print(f"wrote {out}")
    # The plots are drawn from the tables just written: one run, one set of figures.
    plots = subprocess.run([sys.executable, "-m", "tools.bench_plots"], cwd=ROOT, timeout=60)
    return 1 if failed or plots.returncode else 0


if __name__ == "__main__":
    raise SystemExit(main())
