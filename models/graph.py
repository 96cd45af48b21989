"""Make a static ONNX detector batch-dynamic, or re-target it to another input size, by graph edits.

Exports that were made for batch 1 at 640x640 bake those numbers into Reshape targets and, for
Ultralytics heads, into the anchor-grid constants of the box decoder. Re-exporting needs the
original .pt weights and torch; these edits need only `onnx` and work on quantised files too:

- a Reshape of a batch-carrying tensor gets 0 ("copy the input's dim") in place of its leading 1;
- target dims that count grid cells (8400, 80x80, 20*20, ...) are recomputed for the new size, or
  become -1 for a spatially dynamic graph when that is the Reshape's only such dim;
- anchor-point (1, 2, N) and stride (1, N) constants are checked to be Ultralytics' grid for the
  old size and replaced by the grid of the new size (which a spatially dynamic graph cannot have,
  so those heads can be re-targeted but not made spatially dynamic).

Every rewrite is checked by running it: the edited graph at the original size must give the
original's outputs, every batch slot must equal a single run, and the new size must give the
anchor count the decoders expect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from cityeye.models.registry import ModelError, SessionSettings, cached_copy, open_session, save_checked

if TYPE_CHECKING:
    import onnx

STRIDES = (8, 16, 32)
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReshapeReport:
    """What `reshape_model` changed and how its check went (printed by `cityeye models reshape`)."""

    source: str
    out: str
    input_shape: list[int | str]
    output_shape: list[int | str]
    reshapes_edited: int
    anchor_constants_replaced: int
    max_abs_diff_at_original_size: float
    max_abs_diff_batch_vs_single: float | None


def make_anchors(
    hw: tuple[int, int], strides: Sequence[int] = STRIDES
) -> tuple[npt.NDArray[np.float32], ...]:
    """Ultralytics' `make_anchors` (cell centres, offset 0.5) and strides, as its ONNX export stores them."""
    pts, st = [], []
    for s in strides:
        h, w = hw[0] // s, hw[1] // s
        sx = np.arange(w, dtype=np.float32) + np.float32(0.5)
        sy = np.arange(h, dtype=np.float32) + np.float32(0.5)
        yy, xx = np.meshgrid(sy, sx, indexing="ij")
        pts.append(np.stack([xx.ravel(), yy.ravel()], axis=0))
        st.append(np.full(h * w, s, dtype=np.float32))
    return np.concatenate(pts, axis=1)[None], np.concatenate(st)[None]


def _const_values(model: onnx.ModelProto) -> dict[str, Any]:
    from onnx import numpy_helper

    values: dict[str, Any] = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return {k: numpy_helper.to_array(v) for k, v in values.items()}


def _batch_tensors(model: onnx.ModelProto) -> set[str]:
    """Names of tensors computed from the image input (so they carry its batch axis)."""
    live = {i.name for i in model.graph.input}
    for node in model.graph.node:  # ONNX graphs are stored in topological order
        if any(i in live for i in node.input):
            live.update(node.output)
    return live


def _map_dims(
    target: list[int], old_hw: tuple[int, int], new_hw: tuple[int, int] | None, dynamic_batch: bool
) -> list[int] | None:
    """The Reshape target for the new size, None if a grid-dependent dim cannot be expressed."""
    old_cells = [(old_hw[0] // s, old_hw[1] // s) for s in STRIDES]
    new_cells = [(new_hw[0] // s, new_hw[1] // s) for s in STRIDES] if new_hw else None
    old_total = sum(h * w for h, w in old_cells)
    out = list(target)
    spatial: list[int] = []  # positions whose value depends on the input size
    i = 1 if target and target[0] == 1 else 0
    if i and dynamic_batch:
        out[0] = 0
    while i < len(target):
        v = target[i]
        pair = next(
            (k for k, c in enumerate(old_cells) if i + 1 < len(target) and (v, target[i + 1]) == c), None
        )
        if pair is not None and v > 1:
            if new_cells is None:
                return None  # two size-dependent dims: cannot both be -1
            out[i], out[i + 1] = new_cells[pair]
            spatial += [i, i + 1]
            i += 2
            continue
        if v == old_total:
            spatial.append(i)
            out[i] = sum(h * w for h, w in new_cells) if new_cells else -1
        else:
            # A flattened grid is the last dim of NCHW-derived reshapes; elsewhere a small product
            # (8x8 = 64) could be a channel count, so only large ones are taken as grids there.
            last = i == len(target) - 1
            prod = next((k for k, (h, w) in enumerate(old_cells) if v == h * w and (last or v > 64)), None)
            if prod is not None:
                spatial.append(i)
                out[i] = new_cells[prod][0] * new_cells[prod][1] if new_cells else -1
        i += 1
    if new_cells is None and (len(spatial) > 1 or (spatial and -1 in target)):
        return None
    return out


def reshape_model(
    source: Path,
    out: Path,
    *,
    imgsz: tuple[int, int] | str | None = None,
    dynamic_batch: bool = True,
    check_image: npt.NDArray[np.uint8] | None = None,
) -> ReshapeReport:
    """Write a copy of `source` with a dynamic batch axis and/or another input size, checked by running it.

    `imgsz`: (height, width) for a new fixed size, "dynamic" for dynamic height and width (only for
    graphs without baked anchor grids, e.g. YOLOX), None to keep the size. The file is written only
    after the check passed; a failed check raises ModelError and leaves nothing behind.
    """
    model, old_hw, new_hw, edited, replaced = _rewrite(source, imgsz, dynamic_batch)
    args = (old_hw, new_hw, dynamic_batch, check_image, edited, replaced)
    report = save_checked(model, out, lambda tmp: _check(source, tmp, *args))
    return ReshapeReport(**{**{f: getattr(report, f) for f in report.__slots__}, "out": str(out)})


def _rewrite(
    source: Path, imgsz: tuple[int, int] | str | None, dynamic_batch: bool
) -> tuple[onnx.ModelProto, tuple[int, int], tuple[int, int] | None, int, int]:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError(
            "editing model graphs needs the onnx package: pip install onnx (it is in cityeye's dev extra)"
        ) from None
    model = onnx.load(str(source))
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise ModelError(
            f"{source}: input {inp.name!r} must be a static (batch, 3, H, W) tensor to be re-shaped, got "
            f"{[d.dim_value or d.dim_param for d in dims]}; the model already has dynamic axes"
        )
    old_hw = (dims[2].dim_value, dims[3].dim_value)
    spatial_dynamic = imgsz == "dynamic"
    new_hw: tuple[int, int] | None
    if imgsz is None:
        new_hw = old_hw
    elif isinstance(imgsz, str):
        if imgsz != "dynamic":
            raise ModelError(f"imgsz must be (height, width), 'dynamic' or None, got {imgsz!r}")
        new_hw = None
    else:
        new_hw = (int(imgsz[0]), int(imgsz[1]))
        if new_hw[0] % 32 or new_hw[1] % 32 or min(new_hw) < 32:
            raise ModelError(f"new input size {new_hw[0]}x{new_hw[1]} must be multiples of 32")

    consts = _const_values(model)
    live = _batch_tensors(model)
    edited = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or node.input[0] not in live or node.input[1] not in consts:
            continue
        target = [int(v) for v in consts[node.input[1]].tolist()]
        new = _map_dims(target, old_hw, new_hw, dynamic_batch)
        if new is None:
            raise ModelError(
                f"{source}: Reshape {node.name!r} to {target} has more than one size-dependent dim, so its "
                "height and width cannot be made dynamic; re-target it to a fixed size instead "
                "(--imgsz HxW)"
            )
        if new != target:
            name = f"{node.name or node.output[0]}__cityeye_shape"
            model.graph.initializer.append(numpy_helper.from_array(np.array(new, dtype=np.int64), name))
            node.input[1] = name
            edited += 1

    old_pts, old_st = make_anchors(old_hw)
    n_old = old_pts.shape[2]
    replaced = 0
    for init in model.graph.initializer:
        shape = tuple(init.dims)
        if n_old not in shape:
            continue
        arr = numpy_helper.to_array(init)
        if shape == old_pts.shape and np.allclose(arr, old_pts):
            fresh = make_anchors(new_hw)[0] if new_hw else None
        elif shape in (old_st.shape, (n_old,)) and np.allclose(arr.reshape(1, -1), old_st):
            fresh = make_anchors(new_hw)[1].reshape((1, -1) if len(shape) == 2 else (-1,)) if new_hw else None
        else:
            raise ModelError(
                f"{source}: constant {init.name!r} of shape {shape} depends on the "
                f"{old_hw[1]}x{old_hw[0]} input "
                "and is not an Ultralytics anchor grid; this graph cannot be re-shaped safely"
            )
        if fresh is None:
            raise ModelError(
                f"{source}: the box decoder bakes the {old_hw[1]}x{old_hw[0]} anchor grid into constants, so "
                "height and width cannot be dynamic; re-target it to a fixed size instead (--imgsz HxW)"
            )
        if new_hw != old_hw:
            init.CopyFrom(numpy_helper.from_array(fresh.astype(arr.dtype), init.name))
            replaced += 1

    if dynamic_batch:
        dims[0].dim_param = "batch"
    if spatial_dynamic:
        dims[2].dim_param, dims[3].dim_param = "height", "width"
    elif new_hw is not None:
        dims[2].dim_value, dims[3].dim_value = new_hw
    for o in model.graph.output:  # output shapes are re-derived by onnxruntime; stale ones would mislead
        for k, d in enumerate(o.type.tensor_type.shape.dim):
            if k == 0 and dynamic_batch:
                d.dim_param = "batch"
            elif k > 0 and d.dim_value == n_old and new_hw != old_hw:
                d.dim_param = "anchors"
    del model.graph.value_info[:]
    if new_hw is not None and new_hw != old_hw:
        for p in model.metadata_props:
            if p.key == "imgsz":
                p.value = str(list(new_hw))
    return model, old_hw, new_hw, edited, replaced


def _check(
    source: Path,
    candidate: Path,
    old_hw: tuple[int, int],
    new_hw: tuple[int, int] | None,
    dynamic_batch: bool,
    image: npt.NDArray[np.uint8] | None,
    edited: int,
    replaced: int,
) -> ReshapeReport:
    """Run original and edit side by side; raise ModelError if the edit changed what the model computes."""
    from cityeye.vision.letterbox import letterbox

    rng = np.random.default_rng(0)
    if image is None:
        image = rng.integers(0, 256, (old_hw[0] * 3 // 4, old_hw[1], 3), dtype=np.uint8)
    settings = SessionSettings()
    orig = open_session(source, settings)
    edit = open_session(candidate, settings)
    name = orig.get_inputs()[0].name
    x, _ = letterbox(image, old_hw)
    want = orig.run(None, {name: x})[0]
    diff_batch: float | None = None
    if new_hw == old_hw or new_hw is None:
        got = edit.run(None, {name: x})[0]
        if got.shape != want.shape:
            raise ModelError(
                f"edited graph gives output {got.shape} at the original size, original {want.shape}"
            )
        diff = float(np.abs(got - want).max())
        ref = got
        feed_hw = old_hw
    else:
        feed_hw = new_hw
        x2, _ = letterbox(image, new_hw)
        ref = edit.run(None, {name: x2})[0]
        cells = sum((new_hw[0] // s) * (new_hw[1] // s) for s in STRIDES)
        if cells not in ref.shape[1:]:
            raise ModelError(f"edited graph at {new_hw} gives {ref.shape}; expected {cells} anchors")
        # Re-target the edit back to the original size: it must then compute the original's outputs,
        # which shows that every size-dependent number was found and mapped consistently.
        back_model = _rewrite(candidate, old_hw, dynamic_batch=False)[0]
        back = open_session_bytes(back_model.SerializeToString())
        got = back.run(None, {name: x})[0]
        if got.shape != want.shape:
            raise ModelError(
                f"re-targeted graph gives {got.shape} back at the original size, not {want.shape}"
            )
        diff = float(np.abs(got - want).max())
    if diff > 1e-3:
        raise ModelError(f"edited graph differs from the original by up to {diff:g} at the original size")
    if dynamic_batch:
        xb, _ = letterbox(image, feed_hw)
        batch = np.concatenate([xb, xb], axis=0)
        got_b = edit.run(None, {name: batch})[0]
        diff_batch = float(max(np.abs(got_b[0] - ref[0]).max(), np.abs(got_b[1] - ref[0]).max()))
        if diff_batch > 1e-3:
            raise ModelError(f"batch of 2 differs from single runs by up to {diff_batch:g}")
    return ReshapeReport(
        source=str(source),
        out=str(candidate),
        input_shape=[d if isinstance(d, int) else str(d) for d in edit.get_inputs()[0].shape],
        output_shape=[d if isinstance(d, int) else str(d) for d in edit.get_outputs()[0].shape],
        reshapes_edited=edited,
        anchor_constants_replaced=replaced,
        max_abs_diff_at_original_size=diff,
        max_abs_diff_batch_vs_single=diff_batch,
    )


def open_session_bytes(data: bytes) -> Any:
    """A CPU session on an in-memory model (for checks; no file is written)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def derive_model(source: Path, imgsz: tuple[int, int] | None, dynamic_batch: bool) -> Path:
    """The model-cache copy of `source` at `imgsz` and/or with a dynamic batch, made once and reused.

    The name carries the source's content hash, so replacing a model file never picks up a stale
    copy, and every edge box with the same file and settings derives the same model.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        what = f"--imgsz {imgsz[0]}x{imgsz[1]}" if imgsz else "--batch dynamic"
        raise ModelError(
            f"{source} is a fixed-shape model; deriving a copy at the configured input size/batch needs the "
            f"onnx package (pip install onnx), or run `cityeye models reshape {source} {what}` where it is "
            "installed and point model.path at the result"
        ) from None
    size = f"_{imgsz[0]}x{imgsz[1]}" if imgsz else ""
    return cached_copy(
        source,
        f"{'b-dyn' if dynamic_batch else 'b1'}{size}",
        lambda src, out: reshape_model(src, out, imgsz=imgsz, dynamic_batch=dynamic_batch),
        "graph edit",
    )
