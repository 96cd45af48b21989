"""Class scores of statically quantised Ultralytics heads, taken as the bytes the model computes.

In onnxruntime's QDQ export of a YOLOv8/11 head, each stride's class branch ends in a quantised
convolution whose uint8 output is dequantised, reshaped, concatenated over the three strides,
passed through a sigmoid and concatenated again with the boxes: ~4 MB of float copies and 80
sigmoids per anchor per frame, of which the decoder keeps a few hundred. The derived copy outputs
the boxes as before and the class scores as those bytes, (B, classes, anchors) uint8, with each
stride's scale and zero point in its metadata (`cityeye_score_quant`). The decoder
(`UltralyticsQuantizedDecoder`) thresholds the bytes per stride and takes the sigmoid of the
candidates only: same candidates, classes and boxes, scores within 1e-6 of the original's (its
sigmoid is onnxruntime's approximation, ours numpy's). The check below decodes both on an image
and refuses the copy unless that holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

import cityeye
from cityeye.models.registry import (
    ModelError,
    cached_copy,
    load_if_quantised,
    save_checked,
    sessions_to_compare,
)
from cityeye.vision.decoders import SCORE_QUANT_KEY

if TYPE_CHECKING:
    import onnx

    from cityeye.vision.decoders import Candidates

META_KEY = SCORE_QUANT_KEY
OUTPUT_NAME = "cityeye_scores_u8"
_CHECK_CONFIDENCE = 0.01
_SCORE_TOLERANCE = 1e-6
CHECK_FRAME = (
    Path(cityeye.__file__).resolve().parent / "samples" / "pucpr" / "frames" / "2012-09-11_15_16_58.jpg"
)


def _head(model: onnx.ModelProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The output Concat(boxes, Sigmoid(Concat(Reshape(DQ(Q(x))) per stride))) and its QuantizeLinears."""
    graph = model.graph
    if len(graph.output) != 1:
        return None
    prod = {o: n for n in graph.node for o in n.output}
    cat = prod.get(graph.output[0].name)
    if cat is None or cat.op_type != "Concat" or len(cat.input) != 2:
        return None
    sig = prod.get(cat.input[1])
    if sig is None or sig.op_type != "Sigmoid":
        return None
    cat1 = prod.get(sig.input[0])
    if cat1 is None or cat1.op_type != "Concat":
        return None
    quants = []
    for name in cat1.input:
        rs = prod.get(name)
        dq = prod.get(rs.input[0]) if rs is not None and rs.op_type == "Reshape" else None
        q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if dq is None or q is None or q.op_type != "QuantizeLinear" or q.input[1:3] != dq.input[1:3]:
            return None
        quants.append(q)
    return cat, quants


def takes_quantised_scores(source: Path) -> bool:
    """Whether `source` has a statically quantised Ultralytics head (and onnx can edit it)."""
    model = load_if_quantised(source)
    if model is None:
        return False
    return META_KEY not in {p.key for p in model.metadata_props} and _head(model) is not None


def quantised_score_model(source: Path, out: Path) -> None:
    """Write the copy of `source` that outputs boxes and uint8 class scores, after checking it."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    found = _head(model)
    if found is None:
        raise ModelError(
            f"{source} does not end in a statically quantised Ultralytics head (Concat of boxes and the "
            "sigmoid of dequantised class scores); use it as it is"
        )
    cat, quants = found
    graph = model.graph
    consts = {i.name: i for i in graph.initializer}
    prod = {o: n for n in graph.node for o in n.output}
    params = []
    pieces = []
    for k, q in enumerate(quants):
        if q.input[1] not in consts or len(q.input) < 3 or q.input[2] not in consts:
            raise ModelError(f"{source}: class scores of stride {k} have no constant scale and zero point")
        scale = numpy_helper.to_array(consts[q.input[1]])
        zero = numpy_helper.to_array(consts[q.input[2]])
        if scale.size != 1 or zero.dtype != np.uint8 or zero.size != 1:
            raise ModelError(f"{source}: class scores of stride {k} are not quantised per tensor to uint8")
        params.append([float(scale.reshape(())), int(zero.reshape(()))])
        # The same flattening the float path applies (its Reshape target), on the bytes.
        reshape = next(
            n
            for n in graph.node
            if n.op_type == "Reshape"
            and prod.get(n.input[0]) is not None
            and prod[n.input[0]].input[0] == q.output[0]
        )
        piece = f"{OUTPUT_NAME}_{k}"
        graph.node.append(helper.make_node("Reshape", [q.output[0], reshape.input[1]], [piece]))
        pieces.append(piece)
    graph.node.append(helper.make_node("Concat", pieces, [OUTPUT_NAME], axis=2))
    boxes = cat.input[0]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(boxes, onnx.TensorProto.FLOAT, None))
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.UINT8, None))
    prune_to_outputs(graph)  # drop what only fed the float scores
    model.metadata_props.append(onnx.StringStringEntryProto(key=META_KEY, value=json.dumps(params)))
    save_checked(model, out, lambda candidate: _check(source, candidate))


def prune_to_outputs(graph: onnx.GraphProto) -> None:
    """Drop the nodes and initialisers that no longer feed any graph output."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    keep_init = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(keep_init)


def decode_both(
    source: Path, candidate: Path, confidence: float
) -> tuple[Candidates, list[Any], tuple[int, int], dict[str, str]]:
    """The original's candidates on the shipped check frame, and the copy's raw outputs, input size
    and metadata on the same tensor, for a head copy's check to decode and compare."""
    from cityeye.vision.decoders import UltralyticsDecoder
    from cityeye.vision.letterbox import letterbox

    orig, edit, inp, hw = sessions_to_compare(source, candidate, (640, 640))
    image = cv2.imread(str(CHECK_FRAME))  # the shipped parking-lot frame: the head scores real cars
    if image is None:
        raise ModelError(f"cannot read the check frame {CHECK_FRAME}; reinstall cityeye")
    x = np.empty((1, 3, *hw), dtype=np.uint8 if inp.type == "tensor(uint8)" else np.float32)
    letterbox(np.asarray(image, dtype=np.uint8), hw, out=x)
    want = UltralyticsDecoder(orig.get_outputs()[0].shape[1] - 4).decode(
        orig.run(None, {inp.name: x})[0], confidence
    )
    meta = dict(edit.get_modelmeta().custom_metadata_map)
    return want, edit.run(None, {inp.name: x}), hw, meta


def _check(source: Path, candidate: Path) -> None:
    """Decode the original and the copy on one image at a low threshold: they must agree."""
    from cityeye.vision.decoders import quantised_score_decoder

    want, outs, hw, meta = decode_both(source, candidate, _CHECK_CONFIDENCE)
    dec = quantised_score_decoder(hw, meta, outs[1].shape[1])
    got = dec.decode((outs[0], outs[1]), _CHECK_CONFIDENCE)
    same = (
        len(want) > 0
        and len(got) == len(want)
        and np.array_equal(got.class_id, want.class_id)
        and np.array_equal(got.xyxy, want.xyxy)
        and float(np.abs(got.score - want.score).max(initial=0.0)) <= _SCORE_TOLERANCE
    )
    if not same:
        raise ModelError(
            f"{candidate.name}: the byte-score copy of {source} does not decode like the original "
            f"({len(got)} vs {len(want)} candidates); use the original"
        )


def derive_quantised_score_model(source: Path) -> Path:
    """The model-cache byte-score copy of `source`, made once (named after its content hash)."""
    return cached_copy(source, "u8scores", quantised_score_model, "uint8 class scores")
