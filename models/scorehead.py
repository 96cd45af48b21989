"""Class scores (and box bins) of statically quantised Ultralytics heads, taken as the bytes the
model computes.

In onnxruntime's QDQ export of a YOLOv8/11 head, each stride's class branch ends in a quantised
convolution whose uint8 output is dequantised, reshaped, concatenated over the three strides,
passed through a sigmoid and concatenated again with the boxes: ~4 MB of float copies and 80
sigmoids per anchor per frame, of which the decoder keeps a few hundred. The derived copy outputs
the class scores as those bytes, (B, classes, anchors) uint8, with each stride's scale and zero
point in its metadata (`cityeye_score_quant`). Where the box branch's distribution focal loss
decode runs in float on dequantised bins (as in `cityeye models quantize --mode static`, which
leaves the decode unquantised), the copy outputs those bins' bytes too, (B, 4 * reg_max,
anchors), and skips the decode over all anchors (~0.7 ms of an 9 ms run at 384x640).

The decoder (`UltralyticsQuantizedDecoder`) thresholds the score bytes per stride, takes the
sigmoid of the candidates only and decodes only their boxes: same candidates and classes, scores
within 1e-6 of the original's (its sigmoid is onnxruntime's approximation, ours numpy's), boxes
identical, or within 1e-3 px when decoded from bins. The check (`headcut.check_copy`) decodes
both on a real frame and refuses the copy unless that holds (to 1e-3 px for boxes either way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cityeye.models.headcut import dfl_bins, load_head, output_head, save_cut
from cityeye.models.registry import ModelError, cached_copy, load_if_quantised
from cityeye.vision.decoders import BIN_QUANT_KEY, SCORE_QUANT_KEY, STRIDES, quantised_score_decoder

if TYPE_CHECKING:
    import onnx

META_KEY = SCORE_QUANT_KEY
OUTPUT_NAME = "cityeye_scores_u8"
BINS_NAME = "cityeye_bins_u8"

Pieces = list[tuple["onnx.NodeProto", "onnx.NodeProto"]]
"""Per stride: the QuantizeLinear whose bytes the copy outputs, and the Reshape that flattens them."""


def _byte_pieces(prod: dict[str, onnx.NodeProto], concat: str) -> tuple[onnx.NodeProto, Pieces] | None:
    """`concat` as Concat(Reshape(DequantizeLinear(QuantizeLinear(x))) per stride), taken apart."""
    cat = prod.get(concat)
    if cat is None or cat.op_type != "Concat":
        return None
    pieces = []
    for name in cat.input:
        rs = prod.get(name)
        dq = prod.get(rs.input[0]) if rs is not None and rs.op_type == "Reshape" else None
        q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if rs is None or dq is None or q is None or q.op_type != "QuantizeLinear":
            return None
        if q.input[1:3] != dq.input[1:3]:  # dequantised with other parameters than quantised
            return None
        pieces.append((q, rs))
    return cat, pieces


def _head(
    model: onnx.ModelProto,
) -> tuple[onnx.NodeProto, tuple[onnx.NodeProto, Pieces], tuple[onnx.NodeProto, Pieces] | None, int] | None:
    """The output Concat(boxes, Sigmoid(class scores)), the class scores' byte pieces, and, when the
    box branch decodes float bins that are themselves dequantised bytes, the bins' pieces and reg_max."""
    found = output_head(model)
    if found is None:
        return None
    prod, cat, sig = found
    scores = _byte_pieces(prod, sig.input[0])
    if scores is None:
        return None
    bins, reg_max = dfl_bins(model, prod, cat.input[0])
    box_bytes = _byte_pieces(prod, bins) if bins is not None else None
    return cat, scores, box_bytes, reg_max


def takes_quantised_scores(source: Path) -> bool:
    """Whether `source` has a statically quantised Ultralytics head (and onnx can edit it)."""
    model = load_if_quantised(source)
    if model is None:
        return False
    return META_KEY not in {p.key for p in model.metadata_props} and _head(model) is not None


def quantised_score_model(source: Path, out: Path) -> None:
    """Write the copy of `source` that outputs class scores (and box bins, where they are bytes too)
    as uint8, after checking it."""
    import onnx
    from onnx import helper

    model, (cat, scores, box_bytes, reg_max) = load_head(
        source,
        _head,
        "a statically quantised Ultralytics head (Concat of boxes and the sigmoid of dequantised class "
        "scores)",
    )
    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    meta: dict[str, object] = {}
    if box_bytes is not None:
        params = _bytes_output(graph, consts, box_bytes, BINS_NAME, f"{source}: box bins")
        meta[BIN_QUANT_KEY] = {"params": params, "reg_max": reg_max, "strides": list(STRIDES)}
        boxes_out = helper.make_tensor_value_info(BINS_NAME, onnx.TensorProto.UINT8, None)
    else:
        boxes_out = helper.make_tensor_value_info(cat.input[0], onnx.TensorProto.FLOAT, None)
    meta[META_KEY] = _bytes_output(graph, consts, scores, OUTPUT_NAME, f"{source}: class scores")
    outputs = [boxes_out, helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.UINT8, None)]
    # Pruning drops what only fed the float scores (and the box decode over all anchors).
    save_cut(source, model, outputs, meta, out, "byte-score", quantised_score_decoder)


def _bytes_output(
    graph: onnx.GraphProto,
    consts: dict[str, onnx.TensorProto],
    found: tuple[onnx.NodeProto, Pieces],
    name: str,
    what: str,
) -> list[list[float]]:
    """Add output `name`: the pieces' bytes flattened and concatenated as the float path does them.

    Returns each stride's [scale, zero point], which the decoder needs to dequantise them.
    """
    from onnx import helper, numpy_helper

    cat, pieces = found
    if len(pieces) != len(STRIDES):
        raise ModelError(f"{what} come in {len(pieces)} pieces, expected one per stride ({len(STRIDES)})")
    params, flat = [], []
    for k, (q, rs) in enumerate(pieces):
        if q.input[1] not in consts or len(q.input) < 3 or q.input[2] not in consts:
            raise ModelError(f"{what} of stride {k} have no constant scale and zero point")
        scale = numpy_helper.to_array(consts[q.input[1]])
        zero = numpy_helper.to_array(consts[q.input[2]])
        if scale.size != 1 or zero.dtype != np.uint8 or zero.size != 1:
            raise ModelError(f"{what} of stride {k} are not quantised per tensor to uint8")
        params.append([float(scale.reshape(())), float(zero.reshape(()))])
        flat.append(f"{name}_{k}")
        graph.node.append(helper.make_node("Reshape", [q.output[0], rs.input[1]], [flat[-1]]))
    axis = next((a.i for a in cat.attribute if a.name == "axis"), 2)
    graph.node.append(helper.make_node("Concat", flat, [name], axis=axis))
    return params


def derive_quantised_score_model(source: Path) -> Path:
    """The model-cache byte-score copy of `source`, made once (named after its content hash)."""
    return cached_copy(source, "u8head", quantised_score_model, "uint8 class scores and box bins")
