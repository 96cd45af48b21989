"""Feed uint8 pixels straight to INT8 models whose graph begins by quantising the image at 1/255.

onnxruntime's static quantisation of an Ultralytics export starts the graph with
`QuantizeLinear(images, 1/255, 0)`: the normalised float image goes back to exactly the byte each
pixel was. Converting every frame to float (2.9 MB at 384x640) so that the model can convert it
back costs ~0.25 ms per frame on the edge box's CPU plus the model's own quantisation pass, 5 % of a
fast INT8 run. The derived copy drops that node and takes the bytes as its input, so the result
is the same bit for bit: `round((v / 255) / (1 / 255)) == v` for every byte value, which the check
below confirms by running both graphs on an image holding every value in every channel.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cityeye.models.registry import (
    ModelError,
    cached_copy,
    load_if_quantised,
    save_checked,
    sessions_to_compare,
)

if TYPE_CHECKING:
    import onnx

_SCALE = np.float32(1.0 / 255.0)


def _quantise_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto] | None:
    """The input's consumers when they are all QuantizeLinear to uint8 at scale 1/255, zero point 0."""
    from onnx import numpy_helper

    graph = model.graph
    if len(graph.input) < 1:
        return None
    name = graph.input[0].name
    consts = {i.name: i for i in graph.initializer}
    users = [n for n in graph.node if name in n.input]
    if not users:
        return None
    for node in users:
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx") or node.input[0] != name:
            return None
        if len(node.input) < 2 or node.input[1] not in consts:
            return None
        scale = numpy_helper.to_array(consts[node.input[1]])
        if scale.shape not in ((), (1,)) or scale.dtype != np.float32 or scale.reshape(()) != _SCALE:
            return None
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in consts:
                return None
            zp = numpy_helper.to_array(consts[node.input[2]])
            if zp.dtype != np.uint8 or zp.size != 1 or int(zp.reshape(())) != 0:
                return None
    return users


def takes_raw_pixels(source: Path) -> bool:
    """Whether `source` quantises its image input at exactly 1/255 first (and onnx can edit it)."""
    model = load_if_quantised(source)
    if model is None:
        return False
    from onnx import TensorProto

    inp = model.graph.input[0].type.tensor_type
    return inp.elem_type == TensorProto.FLOAT and _quantise_nodes(model) is not None


def raw_pixel_model(source: Path, out: Path) -> None:
    """Write a copy of `source` that takes uint8 pixels, after checking its outputs equal the original's."""
    import onnx

    model = onnx.load(str(source))
    nodes = _quantise_nodes(model)
    if nodes is None:
        raise ModelError(
            f"{source} does not start by quantising its image at scale 1/255 to uint8, so it cannot take "
            "raw pixels; use it as it is"
        )
    graph = model.graph
    name = graph.input[0].name
    for node in nodes:
        for other in graph.node:
            for k, x in enumerate(other.input):
                if x == node.output[0]:
                    other.input[k] = name
        for o in graph.output:
            if o.name == node.output[0]:
                raise ModelError(f"{source}: the quantised image is itself a graph output; not editable")
        graph.node.remove(node)
    graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    save_checked(model, out, lambda candidate: _check(source, candidate))


def _check(source: Path, candidate: Path) -> None:
    """Both graphs on one image holding every byte value in every channel: outputs must be equal."""
    from cityeye.vision.letterbox import letterbox

    orig, edit, inp, hw = sessions_to_compare(source, candidate, (64, 64))
    values = np.arange(hw[0] * hw[1], dtype=np.int64)
    image = np.stack([(values + 85 * c) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    image = image.reshape(hw[0], hw[1], 3)  # same size as the input: no resize, every value fed as is
    x, _ = letterbox(image, hw)
    raw = np.empty(x.shape, dtype=np.uint8)
    letterbox(image, hw, out=raw)
    want = orig.run(None, {inp.name: x})
    got = edit.run(None, {inp.name: raw})
    for w, g in zip(want, got, strict=True):
        if w.shape != g.shape or not np.array_equal(w, g):
            raise ModelError(
                f"{candidate.name}: the raw-pixel copy of {source} does not give the original's outputs "
                f"(max difference {float(np.abs(np.asarray(w, np.float64) - g).max()):g}); use the original"
            )


def derive_raw_pixel_model(source: Path) -> Path:
    """The model-cache raw-pixel copy of `source`, made once (named after its content hash) and reused."""
    return cached_copy(source, "u8in", raw_pixel_model, "uint8 input")
