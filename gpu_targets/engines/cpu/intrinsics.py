"""Raw LLVM for inner loops Numba does not vectorise on its own: a float's bits ANDed
with a mask (branch-free sums over a filter), eight int64 compares with a popcount
(window bounds over dense V), and a step of a sorted window eight keys at a time (the
quantiles of narrow windows)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


# Branch-free row loops, for filters that pass many rows (``dense``). A filter that
# passes ~30% of rows at random makes a per-row ``if`` mispredict on a third of the
# rows, which costs more than the arithmetic it skips; so rows outside V add +0.0 (their amount ANDed with a zero mask), and a run
# start clears the running state by the same trick (``isnew`` is 1 on the first row
# of each run). ``absmask`` clears the sign bit for ``abs: true`` (else it is -1).
# Loops index from 0 so that no index needs Python's negative-index wraparound.


@intrinsic
def _fand(typingctx, x, mask):
    """float64 ``x`` with its bits ANDed with the int64 ``mask`` (-1 keeps x, 0 gives +0.0)."""
    if not (isinstance(x, types.Float) and isinstance(mask, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        xi = builder.bitcast(context.cast(builder, args[0], signature.args[0], types.float64), i64)
        mi = context.cast(builder, args[1], signature.args[1], types.int64)
        return builder.bitcast(builder.and_(xi, mi), ir.DoubleType())

    return types.float64(x, mask), codegen


_ABS_MASK = np.int64(0x7FFFFFFFFFFFFFFF)


@intrinsic
def _count_le8(typingctx, arr, j, thr):
    """Number of ``arr[j:j + 8] <= thr`` (int64): one vector compare and a popcount."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1 and arr.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        jv = context.cast(builder, args[1], signature.args[1], types.int64)
        tv = context.cast(builder, args[2], signature.args[2], types.int64)
        vty = ir.VectorType(i64, 8)
        v = builder.load(builder.bitcast(builder.gep(ary.data, [jv]), vty.as_pointer()), align=8)
        undef = ir.Constant(vty, ir.Undefined)
        first = builder.insert_element(undef, tv, ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))
        mask = builder.bitcast(builder.icmp_signed("<=", v, splat), ir.IntType(8))
        ctpop = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(8), [ir.IntType(8)]), "llvm.ctpop.i8"
        )
        return builder.zext(builder.call(ctpop, [mask]), i64)

    return types.int64(arr, j, thr), codegen


def _splat8(builder, x):
    vty = ir.VectorType(x.type, 8)
    undef = ir.Constant(vty, ir.Undefined)
    first = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


@intrinsic
def _sorted_shift8(typingctx, buf, at, e0, lo, hi, pos, right, key, carry):
    """One group of eight keys in a step of a sorted window (``ranges._range_quantile_sorted``),
    in place: for the elements e = e0..e0 + 7 at ``buf[at:at + 8]`` (int64 keys), the
    new key is ``key`` where e == pos, else the element after e (``right``) or before
    it (not ``right``) where lo <= e <= hi, else e itself. The element after the group
    comes from the next group (not yet rewritten, groups go in ascending order), the
    one before from ``carry``, the previous group's old last key; returns this group's
    old last key (the next carry). Loads are of whole groups an earlier step stored,
    so the stores forward to them."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.int64 and buf.ndim == 1 and buf.layout == "C"):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        av, e0v, lov, hiv, posv, rv, kv, cv = (context.cast(builder, args[k], signature.args[k], types.int64)
                                               for k in range(1, 9))
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        vty = ir.VectorType(i64, 8)
        ptr = builder.bitcast(builder.gep(ary.data, [av]), vty.as_pointer())
        here = builder.load(ptr, align=8)
        after = builder.load(builder.bitcast(builder.gep(ary.data, [builder.add(av, ir.Constant(i64, 8))]),
                                             vty.as_pointer()), align=8)
        prev = builder.shuffle_vector(_splat8(builder, cv), here, ir.Constant(ir.VectorType(i32, 8), list(range(7, 15))))
        nxt = builder.shuffle_vector(here, after, ir.Constant(ir.VectorType(i32, 8), list(range(1, 9))))
        e = builder.add(_splat8(builder, e0v), ir.Constant(vty, list(range(8))))
        moved = builder.select(builder.icmp_signed("!=", rv, ir.Constant(i64, 0)), nxt, prev)
        inside = builder.and_(builder.icmp_signed(">=", e, _splat8(builder, lov)),
                              builder.icmp_signed("<=", e, _splat8(builder, hiv)))
        v = builder.select(inside, moved, here)
        v = builder.select(builder.icmp_signed("==", e, _splat8(builder, posv)), _splat8(builder, kv), v)
        builder.store(v, ptr, align=8)
        return builder.extract_element(here, ir.Constant(i32, 7))

    return types.int64(buf, at, e0, lo, hi, pos, right, key, carry), codegen

