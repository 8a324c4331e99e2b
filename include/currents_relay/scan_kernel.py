"""Raw memory access for the ingest's compiled HTTP scanner (`http_scan`, `http_tape`):
unaligned integer loads and stores at an address, and memcpy into an array, as numba
intrinsics (LLVM IR), so the scanner reads and writes buffers in place."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _pointer(builder: ir.IRBuilder, address: ir.Value, bits: int) -> ir.Value:
    return builder.inttoptr(address, ir.PointerType(ir.IntType(bits)))


@intrinsic
def copy_into(typingctx, out, pos, address, size):  # type: ignore[no-untyped-def]
    """`out[pos:pos + size] =` the `size` bytes at `address`, by LLVM's memcpy: ~10x faster
    than a byte loop or a slice assignment for the short values JSON is made of."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        target = context.make_array(signature.args[0])(context, builder, args[0])
        to = builder.gep(target.data, [args[1]])
        cgutils.raw_memcpy(builder, to, _pointer(builder, args[2], 8), args[3], 1)
        return context.get_dummy_value()

    return types.none(out, pos, address, size), codegen


def _reader(bits: int, widen: str, result: types.Type):  # type: ignore[no-untyped-def]
    """An intrinsic reading the `bits`-bit integer at an address (unaligned), widened to 64
    bits with zeros or its sign ("" if it has 64)."""

    @intrinsic
    def read(typingctx, address):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            value = builder.load(_pointer(builder, args[0], bits), align=1)
            if widen == "zero":
                return builder.zext(value, ir.IntType(64))
            return builder.sext(value, ir.IntType(64)) if widen == "sign" else value

        return result(address), codegen

    return read


def _writer(bits: int):  # type: ignore[no-untyped-def]
    """An intrinsic storing an int64 at an address as a `bits`-bit integer (unaligned)."""

    @intrinsic
    def store(typingctx, address, value):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            narrow = builder.trunc(args[1], ir.IntType(bits)) if bits < 64 else args[1]
            builder.store(narrow, _pointer(builder, args[0], bits), align=1)
            return context.get_dummy_value()

        return types.none(address, value), codegen

    return store


byte_at = _reader(8, "zero", types.int64)
int64_at = _reader(64, "", types.int64)
u32_at = _reader(32, "zero", types.int64)
put8, put64 = _writer(8), _writer(64)
