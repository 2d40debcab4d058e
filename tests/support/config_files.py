"""Hostile configuration files shared by the tests of loading and of reloading them."""

from __future__ import annotations

import itertools


def alias_bomb(levels: int = 9) -> str:
    """The classic "billion laughs": each level repeats the one before nine times."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"
    for prev, cur in itertools.pairwise(names[:levels]):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append(f"deployments: *{names[levels - 1]}")
    return "\n".join(lines) + "\n"
