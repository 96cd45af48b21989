"""Graph helpers shared by the copies that cut an Ultralytics head short (scorehead, floathead).

Both copies stop the graph before per-anchor work the decoder only needs for a few candidates,
drop what no longer feeds an output, and check the copy's decoded result against the file's on a
real frame before it is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

import cityeye
from cityeye.models.registry import ModelError, save_checked, sessions_to_compare

if TYPE_CHECKING:
    import onnx

    from cityeye.vision.decoders import Decoder

CHECK_FRAME = (
    Path(cityeye.__file__).resolve().parent / "samples" / "pucpr" / "frames" / "2012-09-11_15_16_58.jpg"
)
"""A shipped parking-lot frame: the head scores real cars on it, so a check compares real boxes."""
T = TypeVar("T")
CHECK_CONFIDENCE = 0.01
SCORE_TOLERANCE = 1e-6
BOX_TOLERANCE = 1e-3
_QUANTISED_OPS = ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger")


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Each tensor's producing node."""
    return {o: n for n in graph.node for o in n.output}


def output_head(
    model: onnx.ModelProto,
) -> tuple[dict[str, onnx.NodeProto], onnx.NodeProto, onnx.NodeProto] | None:
    """An Ultralytics head's single output Concat(boxes, Sigmoid(class scores)): the producers, the
    Concat and the Sigmoid; None for any other graph."""
    graph = model.graph
    if len(graph.output) != 1 or len(graph.input) < 1:
        return None
    prod = producers(graph)
    cat = prod.get(graph.output[0].name)
    if cat is None or cat.op_type != "Concat" or len(cat.input) != 2:
        return None
    sig = prod.get(cat.input[1])
    if sig is None or sig.op_type != "Sigmoid":
        return None
    return prod, cat, sig


def dfl_bins(model: onnx.ModelProto, prod: dict[str, onnx.NodeProto], boxes: str) -> tuple[str | None, int]:
    """The float tensor of raw box bins that feeds the box branch's distribution focal loss decode
    (Reshape -> Transpose -> Softmax -> Transpose -> Conv with weights 0..reg_max-1), and reg_max.

    (None, 0) when the branch is not that, or is quantised after the bins: a copy could not redo
    that per candidate exactly.
    """
    from onnx import numpy_helper

    consts = {i.name: i for i in model.graph.initializer}
    seen, stack, softmax = set(), [boxes], None
    while stack:
        node = prod.get(stack.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type in _QUANTISED_OPS:
            return None, 0
        if node.op_type == "Softmax":
            softmax = node
            continue
        stack += [i for i in node.input if i and i in prod]
    if softmax is None:
        return None, 0
    tr = prod.get(softmax.input[0])
    rs = prod.get(tr.input[0]) if tr is not None and tr.op_type == "Transpose" else None
    if rs is None or rs.op_type != "Reshape":
        return None, 0
    users = {n.input[0]: n for n in model.graph.node if n.input}
    tr2 = users.get(softmax.output[0])
    conv = users.get(tr2.output[0]) if tr2 is not None and tr2.op_type == "Transpose" else None
    if conv is None or conv.op_type != "Conv" or len(conv.input) < 2 or conv.input[1] not in consts:
        return None, 0
    w = numpy_helper.to_array(consts[conv.input[1]]).reshape(-1)
    if not np.array_equal(w, np.arange(len(w), dtype=w.dtype)):
        return None, 0
    return rs.input[0], len(w)


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


def load_head(
    source: Path, find: Callable[[onnx.ModelProto], T | None], expected: str
) -> tuple[onnx.ModelProto, T]:
    """`source`'s graph and what `find` takes apart in it, or an error naming the `expected` head."""
    import onnx

    model = onnx.load(str(source))
    found = find(model)
    if found is None:
        raise ModelError(f"{source} does not end in {expected}; use it as it is")
    return model, found


DecoderFactory = Callable[[tuple[int, int], dict[str, str], int], "Decoder"]
"""Makes a copy's decoder from its input size, metadata and class count."""


def save_cut(
    source: Path,
    model: onnx.ModelProto,
    outputs: list[onnx.ValueInfoProto],
    metadata: dict[str, object],
    out: Path,
    what: str,
    decoder: DecoderFactory,
) -> None:
    """Give the edited head of `source` its new outputs and metadata (JSON values), drop what no
    longer feeds them, and write it to `out` only if it decodes like `source` (`check_copy`)."""
    import onnx

    graph = model.graph
    del graph.output[:]
    graph.output.extend(outputs)
    prune_to_outputs(graph)
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=json.dumps(value)))
    save_checked(model, out, lambda candidate: check_copy(source, candidate, what, decoder))


def check_copy(source: Path, candidate: Path, what: str, decoder: DecoderFactory) -> None:
    """Decode the original and the copy on the shipped check frame at a low threshold: the same
    candidates and classes, scores within 1e-6 (numpy's sigmoid vs onnxruntime's) and boxes within
    1e-3 px (numpy's softmax of box bins vs onnxruntime's), or the copy is refused."""
    from cityeye.vision.decoders import UltralyticsDecoder
    from cityeye.vision.letterbox import letterbox

    orig, edit, inp, hw = sessions_to_compare(source, candidate, (640, 640))
    image = cv2.imread(str(CHECK_FRAME))
    if image is None:
        raise ModelError(f"cannot read the check frame {CHECK_FRAME}; reinstall cityeye")
    x = np.empty((1, 3, *hw), dtype=np.uint8 if inp.type == "tensor(uint8)" else np.float32)
    letterbox(np.asarray(image, dtype=np.uint8), hw, out=x)
    nc = orig.get_outputs()[0].shape[1] - 4
    want = UltralyticsDecoder(nc).decode(orig.run(None, {inp.name: x})[0], CHECK_CONFIDENCE)
    outs = edit.run(None, {inp.name: x})
    meta = dict(edit.get_modelmeta().custom_metadata_map)
    got = decoder(hw, meta, outs[1].shape[1]).decode((outs[0], outs[1]), CHECK_CONFIDENCE)
    same = len(want) > 0 and len(got) == len(want) and np.array_equal(got.class_id, want.class_id)
    box = float(np.abs(got.xyxy - want.xyxy).max(initial=0.0)) if same else np.inf
    score = float(np.abs(got.score - want.score).max(initial=0.0)) if same else np.inf
    if not (box <= BOX_TOLERANCE and score <= SCORE_TOLERANCE):
        raise ModelError(
            f"{candidate.name}: the {what} copy of {source} does not decode like the original "
            f"({len(got)} vs {len(want)} candidates, box difference {box:g}, score difference {score:g}); "
            "use the original"
        )
