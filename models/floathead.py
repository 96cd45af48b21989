"""Float Ultralytics heads cut before the work that only the candidates need.

A YOLOv8/11 export ends with, for every anchor (5,040 at 384x640): the box branch's distribution
focal loss decode (reshape, transpose, a 16-bin softmax per side, transpose back, a 1x1 convolution
with weights 0..15, slices and the anchor arithmetic) and the class branch's sigmoid, then one
concatenation of both (1.7 MB). The decoder keeps ~100 of those anchors. The derived copy (model
cache, checked against the file when made) outputs the class logits and either the 64 raw box
bins ("dfl") or, where the box branch is quantised at run time and cannot be redone per anchor
exactly, the finished boxes ("xywh"); `UltralyticsLogitDecoder` thresholds the logits, takes the
sigmoid of the candidates and decodes only their boxes. Measured on the shipped model at
384x640: the run is ~1.1 ms (8 %) shorter. Same candidates and classes; scores within 1e-6 and
boxes within 1e-3 pixels of the original's (onnxruntime's exp and sums vs numpy's), which the check
below confirms on a real frame before the copy is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from cityeye.models.headcut import dfl_bins, load_head, output_head, save_cut
from cityeye.models.registry import cached_copy, load_graph
from cityeye.vision.decoders import FLOAT_HEAD_KEY, STRIDES, logit_head_decoder

if TYPE_CHECKING:
    import onnx

LOGITS = "cityeye_class_logits"
BINS = "cityeye_box_bins"


def _head(model: onnx.ModelProto) -> tuple[onnx.NodeProto, onnx.NodeProto, str | None, int] | None:
    """The output Concat(boxes, Sigmoid(logits)), its Sigmoid, and the DFL's input bins and bin count.

    The bins are None when the box branch is not plain float from there on (e.g. quantised at run
    time), so that only the class branch is cut.
    """
    found = output_head(model)
    if found is None:
        return None
    prod, cat, sig = found
    return cat, sig, *dfl_bins(model, prod, cat.input[0])


def takes_logit_head(source: Path) -> bool:
    """Whether `source` ends in a float Ultralytics head this module can cut (and onnx is installed).

    Remembered per file version, so detectors made again and again (tests, reloads) parse it once.
    """
    st = source.stat()
    return _takes(source, (st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=32)
def _takes(source: Path, stamp: tuple[int, int]) -> bool:
    model = load_graph(source)
    if model is None:
        return False
    return FLOAT_HEAD_KEY not in {p.key for p in model.metadata_props} and _head(model) is not None


def logit_head_model(source: Path, out: Path) -> None:
    """Write the copy of `source` that outputs (box bins or boxes, class logits), after checking it."""
    import onnx
    from onnx import helper

    model, (cat, sig, bins, reg_max) = load_head(
        source, _head, "a float Ultralytics head (Concat of boxes and the sigmoid of class logits)"
    )
    graph = model.graph
    first = bins if bins is not None else cat.input[0]
    graph.node.append(helper.make_node("Identity", [first], [BINS]))
    graph.node.append(helper.make_node("Identity", [sig.input[0]], [LOGITS]))
    outputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in (BINS, LOGITS)]
    head = {"boxes": "dfl", "reg_max": reg_max, "strides": list(STRIDES)} if bins else {"boxes": "xywh"}
    # Pruning drops the per-anchor work the decoder now does per candidate.
    save_cut(source, model, outputs, {FLOAT_HEAD_KEY: head}, out, "logit-head", logit_head_decoder)


def derive_logit_head_model(source: Path) -> Path:
    """The model-cache logit-head copy of `source`, made once (named after its content hash)."""
    return cached_copy(source, "logits", logit_head_model, "class logits, boxes decoded per candidate")
