"""Raw LLVM for two inner loops Numba does not vectorise on its own: a float's bits
ANDed with a mask (branch-free sums over a filter) and eight int64 compares with a
popcount (window bounds over dense V)."""

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
