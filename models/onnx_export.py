"""One ONNX graph per (surrogate, family): input transform, K ensemble members, mean and spread, back-transform.

Graph: X (float32 [N, d], raw units) -> Where(log_mask, Log(Max(X, 1e-12)), X) -> each member (skl2onnx,
prefixed ``m{k}_``) -> Reshape [N, m] (skl2onnx declares multi-output MLPs as [N*m, 1], onnx/sklearn-onnx#474)
-> stack [K, N, m] -> ReduceMean / population std over K -> z * sd + mu -> ``mean`` = Exp(.) and
``std`` = mean * std_log (delta method: a spread in log space is a relative spread). Opset 17, so ReduceMean
takes ``axes`` as an attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _member_onnx(member: Any, n_inputs: int, dtype: type) -> onnx.ModelProto:
    from skl2onnx import to_onnx

    return to_onnx(member, np.zeros((1, n_inputs), dtype=dtype), target_opset={"": OPSET, "ai.onnx.ml": 3})


def build_ensemble(members: Sequence[Any], n_inputs: int, log_mask: np.ndarray, y_mu: np.ndarray,
                   y_sd: np.ndarray, columns: Sequence[int], doc: str = "",
                   dtype: type = np.float32) -> onnx.ModelProto:
    """``columns`` picks the outputs (of the members' m outputs) this graph exposes, in that order.
    ``dtype`` float64 is for Gaussian processes (float32 kernels lose the mean, research/models.md 4)."""
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    m_all = len(y_mu)
    cols = np.asarray(columns, dtype=np.int64)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.asarray(log_mask, dtype=bool), "log_mask"),
        numpy_helper.from_array(np.array(1e-12, dtype=dtype), "tiny"),
        numpy_helper.from_array(np.array([-1, m_all], dtype=np.int64), "shape_nm"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"),
        numpy_helper.from_array(cols, "cols"),
        numpy_helper.from_array(np.asarray(y_mu, dtype=dtype)[cols], "y_mu"),
        numpy_helper.from_array(np.asarray(y_sd, dtype=dtype)[cols], "y_sd"),
    ]
    nodes += [
        helper.make_node("Max", ["X", "tiny"], ["x_pos"]),
        helper.make_node("Log", ["x_pos"], ["x_log"]),
        helper.make_node("Where", ["log_mask", "x_log", "X"], ["x_t"]),
    ]
    opsets: dict[str, int] = {"": OPSET}
    stacked = []
    for k, member in enumerate(members):
        mo = onnx.compose.add_prefix(_member_onnx(member, n_inputs, dtype), prefix=f"m{k}_")
        g = mo.graph
        nodes.append(helper.make_node("Identity", ["x_t"], [g.input[0].name]))
        nodes.extend(g.node)
        inits.extend(g.initializer)
        for op in mo.opset_import:
            opsets[op.domain] = max(opsets.get(op.domain, 0), op.version)
        out = g.output[0].name
        nodes.append(helper.make_node("Reshape", [out, "shape_nm"], [f"m{k}_nm"]))
        nodes.append(helper.make_node("Unsqueeze", [f"m{k}_nm", "axis0"], [f"m{k}_u"]))
        stacked.append(f"m{k}_u")
    nodes += [
        helper.make_node("Concat", stacked, ["stack_all"], axis=0),
        helper.make_node("Gather", ["stack_all", "cols"], ["stack"], axis=2),
        helper.make_node("ReduceMean", ["stack"], ["z_mean"], axes=[0], keepdims=0),
        helper.make_node("Sub", ["stack", "z_mean"], ["dev"]),
        helper.make_node("Mul", ["dev", "dev"], ["dev2"]),
        helper.make_node("ReduceMean", ["dev2"], ["z_var"], axes=[0], keepdims=0),
        helper.make_node("Sqrt", ["z_var"], ["z_std"]),
        helper.make_node("Mul", ["z_mean", "y_sd"], ["ly_a"]),
        helper.make_node("Add", ["ly_a", "y_mu"], ["ly"]),
        helper.make_node("Exp", ["ly"], ["mean"]),
        helper.make_node("Mul", ["z_std", "y_sd"], ["ly_std"]),
        helper.make_node("Mul", ["mean", "ly_std"], ["std"]),
    ]
    n_out = len(cols)
    graph = helper.make_graph(
        nodes, "surrogate",
        [helper.make_tensor_value_info("X", elem, [None, n_inputs])],
        [helper.make_tensor_value_info("mean", elem, [None, n_out]),
         helper.make_tensor_value_info("std", elem, [None, n_out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="pilotline-twin models", doc_string=doc)
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model
