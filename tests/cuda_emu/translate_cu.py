#!/usr/bin/env python3
"""Turns a CUDA source into C++ the host compiler takes, for the CUDA emulator
(tests/cuda_emu/README.md). Three rewrites, nothing else, so that the code the
emulator runs is the code nvcc compiles:

  Kernel<T><<<grid, block, smem, stream>>>(args)
      -> ::itkit_emu::Launcher(Kernel<T>, "Kernel<T>", grid, block, smem, stream)(args)
  extern __shared__ __align__(128) uint8_t smem[];
      -> uint8_t* const smem = ::itkit_emu::DynamicShared<uint8_t>();
  __shared__ float partial[32];
      -> the same, then ::itkit_emu::PoisonOncePerBlock(&partial, sizeof(partial));

A #line directive keeps the compiler's messages pointing at the original file.
Usage: translate_cu.py IN OUT (a .cu into a .cpp, or a .cuh into a .cuh)
"""
import re
import sys

IDENT = re.compile(r"[A-Za-z0-9_:]")


def kernel_start(text, end):
    """Start of the kernel expression that ends just before `end` (a name, maybe
    qualified, maybe with template arguments)."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: back to the matching '<'
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == ">":
                depth += 1
            elif text[i] == "<":
                depth -= 1
                if depth == 0:
                    break
    while i > 0 and IDENT.match(text[i - 1]):
        i -= 1
    return i


def rewrite_launches(text):
    out, pos = [], 0
    while True:
        open_at = text.find("<<<", pos)
        if open_at < 0:
            out.append(text[pos:])
            return "".join(out)
        close_at = text.find(">>>", open_at)
        if close_at < 0:
            raise SystemExit("translate_cu.py: '<<<' without '>>>'")
        start = kernel_start(text, open_at)
        if start < pos:
            raise SystemExit("translate_cu.py: cannot find the kernel before '<<<'")
        kernel = text[start:open_at].strip()
        config = text[open_at + 3 : close_at]
        name = " ".join(kernel.split()).replace('"', "")
        out.append(text[pos:start])
        # Newlines in the config are kept so that line numbers stay right.
        out.append(f'::itkit_emu::Launcher({kernel}, "{name}", {config})')
        pos = close_at + 3


STATIC_SHARED = re.compile(r"(__shared__\s+(?:__align__\(\s*\d+\s*\)\s*)?[A-Za-z_][\w:<>]*\s+(\w+)\s*(?:\[[^\]]*\]\s*)*;)")


def poison_static_shared(text):
    """`__shared__ T name[...];` (a function's static under the emulator) is filled with
    0xff bytes when a block first reaches it, as shared memory holds no data a kernel
    did not write; on the same line, so line numbers stay right."""
    return STATIC_SHARED.sub(lambda m: f"{m.group(1)} ::itkit_emu::PoisonOncePerBlock(&{m.group(2)}, sizeof({m.group(2)}));",
                             text)


SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:]*)\s+(\w+)\s*\[\s*\]\s*;")


def rewrite_dynamic_shared(text):
    return SHARED.sub(lambda m: f"{m.group(1)}* const {m.group(2)} = ::itkit_emu::DynamicShared<{m.group(1)}>();", text)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text = poison_static_shared(rewrite_dynamic_shared(rewrite_launches(text)))
    with open(dst, "w", encoding="utf-8") as f:
        f.write(f'#line 1 "{src}"\n')
        f.write(text)


if __name__ == "__main__":
    main()
