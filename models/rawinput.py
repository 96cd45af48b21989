"""Copies of a model that take the frame's pixel bytes, so no float image is made per frame.

Ultralytics models take the image as floats x / 255 (2.9 MB at 384x640): turning every frame into
that tensor costs ~0.2 ms, and quantised graphs then spend a pass turning it back into bytes. The
derived copy (model cache, checked against the file when made) takes a uint8 tensor instead:

- "quantize": onnxruntime's static quantisation starts with `QuantizeLinear(images, 1/255, 0)`,
  which gives back exactly the byte each pixel was; the copy drops the node. Bit-identical.
- "dynamic": run-time quantisation starts with `DynamicQuantizeLinear(images)`; the copy takes that
  node's outputs (bytes, scale, zero point) as inputs and the detector computes them from the
  pixel bytes (vision/inputquant.py, exact for every case). Bit-identical.
- "float": a float graph whose image goes straight into a convolution gets `Cast` to float and,
  when the family normalises, that convolution's weights divided by 255 (what OpenVINO's and
  TensorRT's converters do with an input scale): conv(x / 255, W) = conv(x, W / 255) up to float
  rounding. Not bit-identical: outputs agree to ~1e-6 of their size (checked within 1e-4), far
  below what moves a box or a decision; a family that feeds 0..255 (YOLOX) only gets the Cast and
  is bit-identical.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cityeye.models.registry import ModelError, cached_copy, load_graph, save_checked, sessions_to_compare
from cityeye.vision.inputquant import QUANT_INPUT_KEY, DynamicInputQuantiser
from cityeye.vision.letterbox import LetterboxSpec, letterbox, pixel_values

if TYPE_CHECKING:
    import onnx

_SCALE = np.float32(1.0 / 255.0)
FLOAT_TOLERANCE = 1e-4
"""A folded float copy's outputs may differ from the file's by this much relative to each value's
size (plus the same absolute amount near zero); measured on the shipped model: ~1e-6."""


def _consumers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def _is_quantize_at_255(node: onnx.NodeProto, name: str, consts: dict[str, Any]) -> bool:
    from onnx import numpy_helper

    if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx") or node.input[0] != name:
        return False
    if len(node.input) < 2 or node.input[1] not in consts:
        return False
    scale = numpy_helper.to_array(consts[node.input[1]])
    if scale.shape not in ((), (1,)) or scale.dtype != np.float32 or scale.reshape(()) != _SCALE:
        return False
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in consts:
            return False
        zp = numpy_helper.to_array(consts[node.input[2]])
        if zp.dtype != np.uint8 or zp.size != 1 or int(zp.reshape(())) != 0:
            return False
    return True


def _kind(model: onnx.ModelProto) -> str | None:
    """Which copy applies to the graph (module docstring), or None."""
    from onnx import TensorProto

    graph = model.graph
    if len(graph.input) != 1 or graph.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        return None
    name = graph.input[0].name
    if name in {o.name for o in graph.output}:
        return None
    users = _consumers(model, name)
    if {o for n in users for o in n.output} & {o.name for o in graph.output}:
        return None  # the first node's result is itself an output: nothing to drop or fold
    consts = {i.name: i for i in graph.initializer}
    if users and all(_is_quantize_at_255(n, name, consts) for n in users):
        return "quantize"
    if len(users) != 1 or users[0].domain not in ("", "ai.onnx"):
        return None
    node = users[0]
    if node.op_type == "DynamicQuantizeLinear" and node.input[0] == name:
        return "dynamic"
    if node.op_type == "Conv" and list(node.input).count(name) == 1 and node.input[0] == name:
        weight = node.input[1] if len(node.input) > 1 else ""
        shared = sum(weight in n.input for n in graph.node) > 1
        if weight in consts and consts[weight].data_type == TensorProto.FLOAT and not shared:
            return "float"
    return None


@functools.lru_cache(maxsize=32)
def _kind_of_file(source: Path, stamp: tuple[int, int]) -> str | None:
    model = load_graph(source)
    return None if model is None else _kind(model)


def raw_pixel_kind(source: Path) -> str | None:
    """ "quantize", "dynamic" or "float" when a raw-pixel copy of `source` can be made, else None.

    Remembered per file version, so detectors made again and again (tests, reloads) parse it once.
    """
    st = source.stat()
    return _kind_of_file(source, (st.st_mtime_ns, st.st_size))


def takes_raw_pixels(source: Path) -> bool:
    """Whether `source` quantises its image at exactly 1/255 first (the bit-identical static case)."""
    return raw_pixel_kind(source) == "quantize"


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for k, x in enumerate(node.input):
            if x == old:
                node.input[k] = new


def raw_pixel_model(source: Path, out: Path, normalize: bool = True) -> None:
    """Write the raw-pixel copy of `source` to `out`, after checking it against the original.

    `normalize`: whether the model's family feeds x / 255 (Ultralytics, YOLOv5) rather than 0..255
    (YOLOX); only the float kind depends on it.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    kind = _kind(model)
    if kind is None:
        raise ModelError(
            f"{source} does not start with a convolution, a quantisation at scale 1/255 or a run-time "
            "quantisation of its float image, so it cannot take raw pixels; use it as it is"
        )
    graph = model.graph
    inp = graph.input[0]
    name = inp.name
    users = _consumers(model, name)
    if kind == "quantize":
        for node in users:
            _rename_uses(graph, node.output[0], name)
            graph.node.remove(node)
    elif kind == "dynamic":
        node = users[0]
        q, scale, zero = node.output
        graph.node.remove(node)
        _rename_uses(graph, q, name)
        graph.input.extend(
            [
                helper.make_tensor_value_info(scale, TensorProto.FLOAT, []),
                helper.make_tensor_value_info(zero, TensorProto.UINT8, []),
            ]
        )
        meta = model.metadata_props.add()
        meta.key, meta.value = QUANT_INPUT_KEY, json.dumps({"scale": scale, "zero_point": zero})
    else:
        node = users[0]
        as_float = f"{name}_as_float"
        node.input[0] = as_float
        graph.node.insert(0, helper.make_node("Cast", [name], [as_float], to=TensorProto.FLOAT))
        if normalize:
            init = next(i for i in graph.initializer if i.name == node.input[1])
            w = numpy_helper.to_array(init).astype(np.float32) / np.float32(255.0)
            init.CopyFrom(numpy_helper.from_array(w.astype(np.float32), init.name))
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    exact = kind != "float" or not normalize
    save_checked(model, out, lambda candidate: _check(source, candidate, kind, normalize, exact))


def _check(source: Path, candidate: Path, kind: str, normalize: bool, exact: bool) -> None:
    """Both graphs on images holding every byte value in every channel (peaks 255 and 200)."""
    spec = LetterboxSpec(normalize=normalize)
    orig, edit, inp, hw = sessions_to_compare(source, candidate, (64, 64))
    quantiser = DynamicInputQuantiser(pixel_values(normalize)) if kind == "dynamic" else None
    if quantiser is not None:
        _check_quantiser(candidate)
        names = json.loads(edit.get_modelmeta().custom_metadata_map[QUANT_INPUT_KEY])
    values = np.arange(hw[0] * hw[1], dtype=np.int64)
    image = np.stack([(values + 85 * c) % 256 for c in range(3)], axis=-1).astype(np.uint8)
    image = image.reshape(hw[0], hw[1], 3)  # same size as the input: no resize, every value fed as is
    for img in (image, np.minimum(image, 200)):
        x, _ = letterbox(img, hw, spec)
        raw = np.empty(x.shape, dtype=np.uint8)
        letterbox(img, hw, spec, out=raw)
        feed: dict[str, Any] = {inp.name: raw}
        if quantiser is not None:
            q, params = quantiser.quantise(raw)
            feed = {
                inp.name: q,
                names["scale"]: np.array(params.scale),
                names["zero_point"]: np.array(params.zero_point),
            }
        want = orig.run(None, {inp.name: x})
        got = edit.run(None, feed)
        for w, g in zip(want, got, strict=True):
            wf, gf = np.asarray(w, np.float64), np.asarray(g, np.float64)
            if exact:
                ok = w.shape == g.shape and np.array_equal(w, g)
            else:
                ok = w.shape == g.shape and bool(
                    np.all(np.abs(gf - wf) <= FLOAT_TOLERANCE * (np.abs(wf) + 1))
                )
            if not ok:
                raise ModelError(
                    f"{candidate.name}: the raw-pixel copy of {source} does not give the original's outputs "
                    f"(max difference {float(np.abs(wf - gf).max()):g}); use the original"
                )


def _check_quantiser(candidate: Path) -> None:
    """vision/inputquant.py against onnxruntime's own DynamicQuantizeLinear, every peak and byte."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"])],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [
            helper.make_tensor_value_info("q", TensorProto.UINT8, [None]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("z", TensorProto.UINT8, []),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for normalize in (True, False):
        quantiser = DynamicInputQuantiser(pixel_values(normalize))
        values = pixel_values(normalize)
        for peak in range(256):
            xs = np.tile(np.arange(peak + 1), 8)  # each byte at several offsets (vector and tail code)
            q, s, z = sess.run(None, {"x": values[xs]})
            want = quantiser.for_peak(peak)
            lut = np.arange(256, dtype=np.uint8) if want.lut is None else want.lut
            if s != want.scale or z != want.zero_point or not np.array_equal(q, lut[xs]):
                raise ModelError(
                    f"{candidate.name}: onnxruntime {ort.__version__} quantises images differently from "
                    f"cityeye's emulation (peak byte {peak}); run the model as it is "
                    "(model.raw_pixels: false)"
                )


def derive_raw_pixel_model(source: Path, normalize: bool = True) -> Path:
    """The model-cache raw-pixel copy of `source`, made once (named after its content hash) and reused."""
    kind = raw_pixel_kind(source)
    tag = {"quantize": "u8in", "dynamic": "u8dq", "float": "u8f" if normalize else "u8c"}.get(
        kind or "", "u8"
    )
    return cached_copy(
        source,
        tag,
        lambda src, out: raw_pixel_model(src, out, normalize),
        f"uint8 input ({kind or 'not applicable'})",
    )
